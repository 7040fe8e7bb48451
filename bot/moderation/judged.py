"""What channel moderation last judged of each recent message, so an edit that changed nothing is not judged
(nor acted on, nor warned about) twice."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from bot.moderation.queue import MessageSubject


def _digest(subject: MessageSubject) -> bytes:
    content = hashlib.blake2b(subject.text.encode("utf-8", "surrogatepass"), digest_size=16)
    for url in subject.image_urls:
        content.update(b"\0" + url.encode("utf-8", "surrogatepass"))
    return content.digest()


class JudgedContent:
    """The text and images each of the last `capacity` messages was judged with, by message id.

    Discord sends MESSAGE_UPDATE for pins, flags, suppressed embeds and link previews as well as for edits;
    only a change to what moderation reads is worth judging again. A digest per message (blake2b: an edit
    cannot be made to collide with what it replaces; about 100 bytes with its entry)
    replaces discord.py's message cache for this, which kept whole messages and searched them one by one on
    every update.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._digests: OrderedDict[int, bytes] = OrderedDict()

    def changed(self, subject: MessageSubject) -> bool:
        """Remember what `subject` holds now; True unless it is exactly what was last seen of its message
        (a message seen for the first time, or forgotten since, counts as changed)."""
        digest = _digest(subject)
        key = subject.message_id
        previous = self._digests.pop(key, None)
        self._digests[key] = digest
        if len(self._digests) > self.capacity:
            self._digests.popitem(last=False)
        return previous != digest
