"""Undoes the tricks that hide a word from moderation: invisible characters, marks, lookalikes, markdown."""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

# Default_Ignorable_Code_Point, from DerivedCoreProperties.txt of Unicode 16.0 (unchanged in 17.0).
# Neither unicodedata nor unicodedata2 exposes the property. Some of these are not format characters
# (U+034F, U+115F/U+1160, U+3164 and U+FFA0 Hangul fillers, variation selectors, U+180B..U+180F).
DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Scripts whose words read the same without combining marks; marks over their letters (or over spaces,
# digits, punctuation) are how zalgo and "Hebrew points over Latin" bury a word. Other scripts need them.
_STRIP_MARKS_OVER = ("LATIN", "GREEK", "CYRILLIC")

# Discord markdown that renders to nothing inside a word: emphasis, underline, strike, spoiler, code.
_MARKDOWN_MARKERS = re.compile(r"\\?(?:\*|_|~~|\|\||`)")
_MASKED_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?[^)\s>]*>?(?:\s+\"[^\"]*\")?\s*\)")
# Headings, subtext, block quotes and list bullets at the start of a line.
_LINE_PREFIX = re.compile(r"(?m)^[ \t]*(?:#{1,3}[ \t]+|-#[ \t]+|>>>[ \t]?|>[ \t]?|[-*+][ \t]+)")
_WORD = re.compile(r"\w+")
# Characters without which each pattern above cannot match: most messages have none, and a membership test
# is far cheaper than a substitution that finds nothing (channel moderation renders every message).
_MARKER_CHARS = frozenset("*_~|`")
_PREFIX_CHARS = frozenset("#->*+")


def _category_runs(wanted: tuple[str, ...]) -> list[tuple[int, int]]:
    """Ranges of code points whose general category starts with one of `wanted`, as this Python knows them.
    Format characters and marks exist only in planes 0, 1 and 14: ~20 ms once, not a scan of all 17."""
    ranges: list[tuple[int, int]] = []
    for start, end in ((0, 0x20000), (0xE0000, 0xE1000)):
        run_start = -1
        for point in range(start, end):
            if unicodedata.category(chr(point)).startswith(wanted):
                if run_start < 0:
                    run_start = point
            elif run_start >= 0:
                ranges.append((run_start, point - 1))
                run_start = -1
        if run_start >= 0:
            ranges.append((run_start, end - 1))
    return ranges


@cache
def _invisible() -> dict[int, None]:
    """Default-ignorable code points and format characters (Cf), as a str.translate table deleting them."""
    ranges = [*DEFAULT_IGNORABLE_RANGES, *_category_runs(("Cf",))]
    return dict.fromkeys(p for start, end in ranges for p in range(start, end + 1))


@cache
def _invisible_chars() -> frozenset[str]:
    return frozenset(chr(p) for p in _invisible())


_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def is_blank(text: str) -> bool:
    """True when nothing in `text` would show: only spaces, controls, invisible or format characters, or
    marks with no letter to sit on. Such a prompt is empty, however long it is."""
    invisible = _invisible_chars()
    return all(
        char in invisible or char.isspace() or unicodedata.category(char) in _BLANK_CATEGORIES
        for char in text
    )


# Sets, not regex classes: a class reaching past U+FFFF is matched range by range, ~100x slower.
@cache
def _marks() -> frozenset[str]:
    """Combining marks (Mn, Mc, Me)."""
    return frozenset(chr(p) for start, end in _category_runs(("M",)) for p in range(start, end + 1))


@cache
def _carries_marks() -> frozenset[str]:
    """Marks and the precomposed letters that hold one ('é'): a text with none needs no walk letter by
    letter (Korean syllables decompose into jamo, which are letters)."""
    marks = _marks()
    return frozenset(
        chr(point)
        for start, end in ((0, 0x20000), (0xE0000, 0xE1000))
        for point in range(start, end)
        if chr(point) in marks
        or (
            unicodedata.decomposition(chr(point))[:1] not in ("", "<")  # a canonical decomposition
            and not marks.isdisjoint(unicodedata.normalize("NFD", chr(point)))
        )
    )


# The prototypes packed once from confusable-homoglyphs (`python -m bot.moderation.normalize` rewrites
# the file; a test checks it still matches the package). Reading the package's 900 KB confusables.json at
# start-up left ~4 MiB resident in half-empty memory pools for the life of the process; this is 77 KB.
PROTOTYPES_RESOURCE = "confusable_prototypes.json"
_PACKAGE = "bot.moderation"  # not __package__: `python -m` runs this module as __main__


def _entry_character(pairs: list[tuple[str, Any]]) -> Any:
    """confusables.json's {"c": character, "n": name} entries as the character; other objects as dicts."""
    if len(pairs) == 2 and {pairs[0][0], pairs[1][0]} == {"c", "n"}:
        return pairs[0][1] if pairs[0][0] == "c" else pairs[1][1]
    return dict(pairs)


def derive_confusable_prototypes() -> dict[str, str]:
    """Each confusable character mapped to its TR39 prototype, derived from confusable-homoglyphs's
    confusables.json (confusables.txt). What the packed resource holds.

    The package stores the pairs of confusables.txt in both directions. Each source maps to exactly one
    prototype and no prototype is a source, so a character with several partners is a prototype; for a
    pair of single partners the package wrote the source's key first.
    """
    raw = json.loads(
        files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"),
        object_pairs_hook=_entry_character,
    )

    def clean(chars: str) -> str:
        return chars.replace("\u200e", "")  # confusables.txt wraps right-to-left characters in LRM marks

    partners: dict[str, list[str]] = {}
    for key, entries in raw.items():
        partners.setdefault(clean(key), []).extend(clean(entry) for entry in entries)
    order = {key: index for index, key in enumerate(partners)}
    prototypes: dict[str, str] = {}
    for key, linked in partners.items():
        if len(key) != 1 or len(set(linked)) != 1:
            continue  # a sequence, or several partners: a prototype
        (other,) = set(linked)
        other_linked = set(partners.get(other, ()))
        if other_linked != {key} or order[key] < order.get(other, -1):
            prototypes[key] = other
    return prototypes


def pack_confusable_prototypes(prototypes: dict[str, str]) -> str:
    """The resource's text: one JSON object, ASCII-escaped so no editor or diff mangles the lookalikes."""
    return json.dumps(prototypes, separators=(",", ":"), sort_keys=True) + "\n"


@cache
def confusable_prototypes() -> dict[str, str]:
    """Each confusable character mapped to its TR39 prototype (confusables.txt via confusable-homoglyphs),
    read from the packed resource."""
    prototypes: dict[str, str] = json.loads(files(_PACKAGE).joinpath(PROTOTYPES_RESOURCE).read_text("ascii"))
    return prototypes


def skeleton(text: str) -> str:
    """The Unicode TR39 skeleton: NFD, each character replaced by its prototype, NFD again. Two strings
    are confusable when their skeletons are equal. It rewrites plain ASCII too ('m' -> 'rn', 'I' -> 'l'),
    so it is for comparing, not for reading."""
    prototypes = confusable_prototypes()
    mapped = "".join(prototypes.get(char, char) for char in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


@cache
def _latin_lookalikes() -> dict[str, str]:
    """Non-ASCII characters whose TR39 prototype is ASCII letters or digits (Cyrillic 'а' -> 'a')."""
    return {
        source: target
        for source, target in confusable_prototypes().items()
        if not source.isascii() and target.isascii() and target.isalnum()
    }


def _reads_as_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_STRIP_MARKS_OVER)


def _fold_word(match: re.Match[str]) -> str:
    word = match.group()
    if word.isascii():
        return word
    lookalikes = _latin_lookalikes()
    if not any(char in lookalikes for char in word):
        return word
    # A word mixing lookalikes into Latin letters is read as Latin, and so is one made only of Greek or
    # Cyrillic lookalikes ("КІСК"); a Russian, Arabic or Hebrew word that merely contains one stays.
    if not any(char.isascii() and char.isalpha() for char in word):
        letters = [char for char in word if char.isalpha()]
        if not letters or not all(char in lookalikes and _reads_as_latin(char) for char in letters):
            return word
    return "".join(lookalikes.get(char, char) for char in word)


@lru_cache(maxsize=4096)
def _marks_go_after(char: str) -> bool:
    """Whether combining marks after `char` are dropped: after Latin, Greek, Cyrillic and non-letters."""
    return char.isascii() or not char.isalpha() or _reads_as_latin(char)


def _strip_marks(text: str) -> str:
    """Drop combining marks over Latin, Greek and Cyrillic letters and over non-letters; keep the rest."""
    if _carries_marks().isdisjoint(text):
        return text
    decomposed = unicodedata.normalize("NFD", text)
    marks = _marks()
    out: list[str] = []
    strip = False
    for char in decomposed:
        if char in marks:
            if strip:
                continue
        else:
            strip = _marks_go_after(char)
        out.append(char)
    # NFC puts back what NFD took apart in the scripts that keep their marks (Hangul syllables, kana).
    return unicodedata.normalize("NFC", "".join(out))


def render_markdown(text: str) -> str:
    """The text as Discord shows it, near enough to read words split by markup: `FL**AG**ME` -> FLAGME."""
    if "](" in text:
        text = _MASKED_LINK.sub(r"\1", text)
    if not _PREFIX_CHARS.isdisjoint(text):
        text = _LINE_PREFIX.sub("", text)
    if _MARKER_CHARS.isdisjoint(text):
        return text
    return _MARKDOWN_MARKERS.sub("", text)


def normalize(text: str) -> str:
    """What a flagged word hidden in `text` reads as: NFKC, no default-ignorable or format characters,
    markdown rendered out, no marks over Latin/Greek/Cyrillic, Latin lookalikes folded to ASCII.

    Pure and linear in the length; the original text should be moderated too (this one loses accents,
    and folds lookalikes that a real word in another script may use)."""
    if text.isascii():
        return render_markdown(text)
    text = unicodedata.normalize("NFKC", text)
    if not _invisible_chars().isdisjoint(text):
        text = text.translate(_invisible())
    text = _strip_marks(text)
    # After the marks: a mark between two '~' or '|' would otherwise keep them from reading as markup.
    text = render_markdown(text)
    if _latin_lookalikes().keys().isdisjoint(text):
        return text
    return _WORD.sub(_fold_word, text)


def moderation_inputs(text: str) -> list[str]:
    """The texts to moderate for `text`: itself, and its normalised form when that differs and has words."""
    normalized = normalize(text)
    if normalized == text or not normalized.strip():
        return [text]
    return [text, normalized]


def warm_up() -> None:
    """Build the tables now (~0.3 s of CPU once per process) rather than on the first non-ASCII message,
    where it would stall the event loop mid-traffic."""
    normalize("\u00e9\u0430")


def main() -> None:
    """Rewrite the packed prototypes from the installed confusable-homoglyphs."""
    path = files(_PACKAGE).joinpath(PROTOTYPES_RESOURCE)
    with open(str(path), "w", encoding="ascii") as out:
        out.write(pack_confusable_prototypes(derive_confusable_prototypes()))


if __name__ == "__main__":
    main()
