"""`python -m bot.settings`: regenerate `.env.example`, the README settings table and docs/settings.md."""

from __future__ import annotations

import sys

from bot.settings.docs import generated_files


def main(argv: list[str]) -> int:
    check_only = "--check" in argv
    stale = []
    for path, text in generated_files().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "out of date" if check_only else "rewrote"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if check_only and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
