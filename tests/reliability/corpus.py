"""Hostile and odd inputs, as plain data: texts every text option and channel message gets, and attachments."""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass

from PIL import Image

MODEL_PINGS = "@everyone <@&123> <@456> @here look at this"


def _zalgo(text: str, marks: int = 12) -> str:
    rng = random.Random(7)
    combining = [chr(c) for c in range(0x0300, 0x036F)]
    return "".join(ch + "".join(rng.choice(combining) for _ in range(marks)) for ch in text)


def _long_prose(chars: int) -> str:
    words = "the quick brown fox jumps over the lazy dog while a pangram keeps on going".split()
    out: list[str] = []
    length = 0
    index = 0
    while length < chars:
        word = words[index % len(words)]
        out.append(word)
        length += len(word) + 1
        index += 1
    return " ".join(out)[:chars]


# name -> text. Discord lets a user type each of these into a string option or a message.
HOSTILE_TEXTS: dict[str, str] = {
    "whitespace": " \n\t \u3000 ",
    "6000 chars": _long_prose(6000),
    "zalgo": _zalgo("hello there"),
    "rtl override": "\u202eexe.elif_tnecoon\u202c is a file; \u2067 isolate \u2069 and \u200f rlm",
    "zero-width": "\u200bhi\u200c the\u200dre\ufeff\u2060",
    "mass mentions": "@everyone @here <@&123> <@456> <@!789> please ping them all",
    "sql": "Robert'); DROP TABLE turns; DELETE FROM moderation_policies; --",
    "sql quotes": "' OR '1'='1' /* \" ; SELECT * FROM usage_events -- ",
    "format strings": "%s %d {0} {prompt!r} ${HOME} `rm -rf /` \\x00 \\n",
    "unbalanced fences": "```python\nprint('never closed')\n``` ``` ```",
    "nul and controls": "a\x00b\x01c\x1bd\x7f",
    "emoji and astral": "👩\u200d👩\u200d👧\u200d👦 𝕳𝖊𝖑𝖑𝖔 \U0001f4a9" * 20,
    "markdown bomb": "||" * 200 + "**" * 200 + "> " * 200,
}

# Short ones, for options Discord caps at a few characters (languages, durations, command names).
SHORT_HOSTILE: dict[str, str] = {
    "whitespace": "   ",
    "sql": "'; DROP--",
    "rtl": "\u202eh1",
    "zero-width": "\u200b1h",
    "negative": "-5m",
    "huge": "99999999999d",
    "float": "1e309h",
    "nul": "1\x00h",
}


@dataclass(frozen=True)
class HostileFile:
    filename: str
    data: bytes
    content_type: str | None


def png_bytes(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_ogg() -> bytes:
    """An Ogg page header followed by garbage: looks like audio to a sniffer, decodes to nothing."""
    return b"OggS\x00\x02" + bytes(20) + random.Random(3).randbytes(4000)


def wav_header_lie() -> bytes:
    """A RIFF/WAVE header claiming a huge data chunk, then nothing."""
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFF0)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 48000, 96000, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFF00)
    )


THIRTY_MIB = 30 * 1024 * 1024


def hostile_images() -> dict[str, HostileFile]:
    """Files handed to an image option: each must be refused clearly or handled safely."""
    return {
        "text named .png": HostileFile("cat.png", b"this is not an image at all", "image/png"),
        "png named .txt": HostileFile("notes.txt", png_bytes(), "text/plain"),
        "png claiming jpeg": HostileFile("photo.jpg", png_bytes(), "image/jpeg"),
        "zero bytes": HostileFile("empty.png", b"", "image/png"),
        "30 MiB": HostileFile("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(THIRTY_MIB), "image/png"),
        "pdf as image": HostileFile(
            "scan.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF", "image/png"
        ),
        "truncated png": HostileFile("half.png", png_bytes(64)[:40], "image/png"),
        "no content type": HostileFile("mystery", png_bytes(), None),
    }


def hostile_audio() -> dict[str, HostileFile]:
    """Files handed to /transcribe."""
    return {
        "corrupt ogg": HostileFile("voice.ogg", corrupt_ogg(), "audio/ogg"),
        "lying wav header": HostileFile("memo.wav", wav_header_lie(), "audio/wav"),
        "zero bytes": HostileFile("empty.mp3", b"", "audio/mpeg"),
        "30 MiB": HostileFile("long.mp3", b"ID3" + bytes(THIRTY_MIB), "audio/mpeg"),
        "image named .mp3": HostileFile("song.mp3", png_bytes(), "audio/mpeg"),
        "text as audio": HostileFile("speech.ogg", b"hello, this is text", "audio/ogg"),
        "exe named .m4a": HostileFile("clip.m4a", b"MZ\x90\x00" + bytes(500), "audio/mp4"),
    }
