"""README stays a front door: small, and every docs/ page it links to exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
MAX_README_BYTES = 16_000
# A Markdown link target under docs/, with an optional #anchor: [text](docs/page.md#section)
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+\.md)(?:#[^)\s]*)?\)")


def test_readme_is_at_most_16000_bytes() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/"


def test_every_docs_link_in_the_readme_resolves() -> None:
    links = DOCS_LINK.findall(README.read_text(encoding="utf-8"))
    assert links, "README.md links to no docs/ page"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README.md links to missing pages: {missing}"


def test_links_between_docs_pages_resolve() -> None:
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert pages
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s:]+\.md)(?:#[^)\s]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{page.name} -> {target}")
    assert not broken, f"broken links between docs pages: {broken}"
