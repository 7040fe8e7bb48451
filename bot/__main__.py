"""`python -m bot [run|check|invite|prices|backup|restore|migrate-db]`: run the bot or one operator tool
(`migrate-db --from sqlite:///... --to postgresql://...` copies a database)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.ops.logs import configure_logging
from bot.settings import SettingsError, load_settings

__all__ = ["configure_logging", "main"]

# What each tool does without: `invite` only prints a URL, backups only touch the database.
NOT_NEEDED = {
    "invite": ("OPENAI_API_KEY", "DISCORD_TOKEN"),
    "backup": ("OPENAI_API_KEY", "DISCORD_TOKEN"),
    "restore": ("OPENAI_API_KEY", "DISCORD_TOKEN"),
    "prices": ("OPENAI_API_KEY", "DISCORD_TOKEN"),
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bot", description="A Discord bot for the OpenAI API.")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (the default)")
    check = commands.add_parser("check", help="check the configuration, naming the cause of each failure")
    check.add_argument("--json", action="store_true", help="one JSON document for scripts")
    invite = commands.add_parser(
        "invite", help="print the invite URL (needs DISCORD_TOKEN or --application-id)"
    )
    invite.add_argument("--application-id", type=int, help="the Application ID from the developer portal")
    invite.add_argument("--json", action="store_true", help="one JSON document for scripts")
    prices = commands.add_parser(
        "prices", help="list the price table, PRICES_FILE's overrides and configured models without a price"
    )
    prices.add_argument("--json", action="store_true", help="one JSON document for scripts")
    backup = commands.add_parser("backup", help="copy the running bot's SQLite database to PATH, verified")
    backup.add_argument("path", help="the file to write (must not exist)")
    backup.add_argument("--json", action="store_true", help="one JSON document for scripts")
    restore = commands.add_parser(
        "restore", help="replace the database with the backup at PATH (bot stopped)"
    )
    restore.add_argument("path", help="a file written by `python -m bot backup`")
    restore.add_argument("--json", action="store_true", help="one JSON document for scripts")
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate-db"]:
        # Needs no Discord token or OpenAI key: only the two databases named on the command line.
        from bot.ops.migrate_db import main as migrate_db

        return migrate_db(argv[1:])
    args = parser().parse_args(argv)
    command = args.command or "run"
    if command in ("backup", "restore"):
        from bot.ops.backup import postgres_refusal

        if refusal := postgres_refusal(os.environ):
            print(refusal, file=sys.stderr)
            return 2
    not_needed: tuple[str, ...] = NOT_NEEDED.get(command, ())
    if command == "invite" and args.application_id is None:
        not_needed = ("OPENAI_API_KEY",)
    try:
        settings = load_settings(not_needed=not_needed)
    except SettingsError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if command == "invite":
        from bot.ops.invite import invite

        return invite(settings, application_id=args.application_id, as_json=args.json)
    if command == "check":
        from bot.ops.doctor import run_checks

        return asyncio.run(run_checks(settings, as_json=args.json))
    if command == "prices":
        from bot.ops.prices import prices_command

        return prices_command(settings, as_json=args.json)
    if command in ("backup", "restore"):
        from bot.ops import backup as tools

        run_tool = tools.backup_command if command == "backup" else tools.restore_command
        return run_tool(settings.database_path, args.path, as_json=args.json)
    from bot.ops.runner import run_bot

    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
