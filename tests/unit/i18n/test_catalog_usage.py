"""Every message id the code names is in both catalogs, and every Korean entry is really translated."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bot.i18n import catalog_ids

ROOT = Path(__file__).resolve().parents[3]
# The namespaces of catalog ids; a string literal in code shaped like one of these is a message id.
NAMESPACES = (
    "attachment",
    "category",
    "choice",
    "command",
    "duration",
    "error",
    "failure",
    "file",
    "help",
    "input",
    "moderation",
    "modlog",
    "notice",
    "permission",
    "settings",
    "unit",
    "welcome",
    "what",
)
MESSAGE_ID = re.compile(rf"^(?:{'|'.join(NAMESPACES)})\.[A-Za-z0-9_.\-]+$")
# Strings shaped like an id that are not one.
NOT_IDS = frozenset({"settings.md"})
# Ids built at run time from a literal prefix (f"moderation.warning.{kind}"): the prefix must name entries.
PREFIX = re.compile(rf"^(?:{'|'.join(NAMESPACES)})\.[A-Za-z0-9_.\-]*\.$")

# Korean text that is the same as the English on purpose: names (voices, models), formats with no words.
SAME_IN_KOREAN = re.compile(
    r"^(choice\.(Alloy|Ash|Ballad|Cedar|Coral|Echo|Fable|Marin|Nova|Onyx|Sage|Shimmer|Verse)"
    r"|command\..*\.option\..*\.name"
    r"|modlog\.separator|moderation\.status\.(threshold|action)_line|moderation\.test\.line"
    r"|moderation\.action\.set|help\.line)$"
)


def _sources() -> list[Path]:
    return sorted(p for folder in ("bot", "cogs") for p in (ROOT / folder).rglob("*.py"))


def _literals(path: Path) -> tuple[set[str], set[str]]:
    """(whole message ids, f-string prefixes) named in one module."""
    ids: set[str] = set()
    prefixes: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in in_fstrings
            and MESSAGE_ID.match(node.value)
            and node.value not in NOT_IDS
        ):
            ids.add(node.value)
        if isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str) and PREFIX.match(head.value):
                prefixes.add(head.value)
    return ids, prefixes


def _used() -> tuple[dict[str, str], dict[str, str]]:
    ids: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for path in _sources():
        found, heads = _literals(path)
        where = str(path.relative_to(ROOT))
        ids.update(dict.fromkeys(found, where))
        prefixes.update(dict.fromkeys(heads, where))
    return ids, prefixes


def test_the_scan_finds_the_ids_the_code_uses() -> None:
    ids, prefixes = _used()
    assert {"error.quota", "modlog.title.message", "input.ask.empty", "settings.language.forced"} <= set(ids)
    assert "moderation.warning." in prefixes


def test_every_message_id_in_the_code_is_in_both_catalogs() -> None:
    ids, prefixes = _used()
    for language in ("en", "ko"):
        catalog = catalog_ids(language)
        missing = sorted(f"{i} ({where})" for i, where in ids.items() if not catalog.get(i))
        assert missing == [], f"{language}: message ids used in code but missing: {missing}"
        # Whole ids that merely look like one (a module name in a string, say) would be listed above.
        for prefix, where in prefixes.items():
            assert any(key.startswith(prefix) for key in catalog), f"{language}: no {prefix}* for {where}"


def test_every_korean_entry_is_translated_not_copied() -> None:
    english, korean = catalog_ids("en"), catalog_ids("ko")
    copied = sorted(
        i for i, text in korean.items() if text == english.get(i) and re.search(r"[A-Za-z]{3}", text)
    )
    copied = [i for i in copied if not SAME_IN_KOREAN.match(i)]
    assert copied == [], f"Korean entries identical to the English: {copied}"
