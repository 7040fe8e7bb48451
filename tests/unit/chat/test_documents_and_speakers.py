"""Document reading (encodings, kinds, refusals) and speaker aliases, as plain data."""

from __future__ import annotations

import pytest

from bot.chat.conversation import Speakers
from bot.chat.documents import UnreadableFile, read_document
from tests.support.files import pdf_bytes


def test_text_in_any_encoding_is_read() -> None:
    assert read_document("a.txt", "héllo wörld".encode(), max_pages=5).text == "héllo wörld"
    japanese = "これは会議のメモです。来週の火曜日に出荷します。" * 3
    assert read_document("memo.txt", japanese.encode("shift_jis"), max_pages=5).text == japanese
    assert read_document("a.txt", "\ufeffbom".encode(), max_pages=5).text == "bom"


def test_kinds_follow_the_name_or_the_content() -> None:
    assert read_document("t.csv", b"a,b\n1,2", max_pages=1).kind == "csv"
    assert read_document("r.md", b"# Title", max_pages=1).kind == "markdown"
    assert read_document("message", b'{"a": 1}', max_pages=1).kind == "json"


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("empty.txt", b"", "empty"),
        ("blob.bin", bytes(range(256)), "I can't read"),
        ("photo.heic", b"\x00\x00\x00\x18ftypheic", "I can't read"),
        ("locked.pdf", pdf_bytes("x", password="pw"), "encrypted"),
        ("long.pdf", pdf_bytes("a", "b", "c"), "at most 2 pages"),
        ("broken.pdf", b"%PDF-1.4 nothing else", "damaged"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(name: str, data: bytes, says: str) -> None:
    with pytest.raises(UnreadableFile) as refused:
        read_document(name, data, max_pages=2)
    assert says in refused.value.user_message()
    assert f"`{name}`" in refused.value.user_message()


def test_speakers_are_unique_and_mapped_back_to_their_names() -> None:
    speakers = Speakers()
    names = {1: "김철수", 2: "민지 🌸", 3: "🎉", 4: "a.b", 5: "a b", 6: "alice"}
    aliases = {member: speakers.alias(member, name) for member, name in names.items()}
    assert len(set(aliases.values())) == len(names)
    assert aliases[6] == "alice" and speakers.alias(1, "김철수") == aliases[1]  # stable for a member
    legend = speakers.legend()
    for member in (1, 2, 3, 4, 5):
        assert f'`{aliases[member]}` is "{names[member]}"' in legend
    assert '"alice"' not in legend  # a name that is its own alias needs no key
