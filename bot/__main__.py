"""`python -m bot [run|check|invite|migrate-db]`: run the bot, check the setup, print the invite URL, or copy a
database (`migrate-db --from sqlite:///... --to postgresql://...`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.settings import SettingsError, load_settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # The HTTP clients log request bodies at DEBUG only; keep them quiet even when LOG_LEVEL=DEBUG.
    for noisy in ("httpx2", "httpcore", "openai._base_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate-db"]:
        # Needs no Discord token or OpenAI key: only the two databases named on the command line.
        from bot.ops.migrate_db import main as migrate_db

        return migrate_db(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bot", description="A Discord bot for the OpenAI API.")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "check", "invite"],
        help="run the bot (default), check the configuration, or print the invite URL "
        "(`migrate-db --help` copies a SQLite database into PostgreSQL)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "invite":
        from bot.ops.invite import invite_url

        print(invite_url(settings))
        return 0
    if args.command == "check":
        from bot.ops.doctor import run_checks

        return asyncio.run(run_checks(settings))
    from bot.ops.runner import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
