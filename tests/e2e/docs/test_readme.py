"""README stays true: every setting and every synced command (with its options) is documented, nothing more."""

from __future__ import annotations

import re
from pathlib import Path

from discord import app_commands

from bot.discord_io.client import OpenAIBot
from bot.settings import documented_settings

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def first_cells(title: str) -> list[str]:
    return [line.split("|")[1].strip() for line in section(title).splitlines() if line.startswith("| ")]


def test_every_setting_is_in_the_readme_table_and_env_example() -> None:
    names = {name for name, _, _ in documented_settings()}
    table = {cell.strip("`") for cell in first_cells("Settings")} - {"Variable"}
    assert table == names
    example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))
    assert example == names


def usage(command: app_commands.Command) -> str:  # type: ignore[type-arg]
    options = [p.name if p.required else f"[{p.name}]" for p in command.parameters]
    return " ".join([f"/{command.qualified_name}", *options])


async def test_every_command_and_option_is_in_the_readme_table(bot: OpenAIBot) -> None:
    documented = {cell.strip("`") for cell in first_cells("Commands")} - {"Command"}
    synced: set[str] = set()
    menus: set[str] = set()
    for command in bot.tree.walk_commands():
        if isinstance(command, app_commands.Command):
            synced.add(usage(command))
    for menu in bot.tree.get_commands(type=None):
        if isinstance(menu, app_commands.ContextMenu):
            menus.add(menu.name)
    slash = {cell for cell in documented if cell.startswith("/")}
    assert slash == synced, f"missing from README: {synced - slash}; not in the bot: {slash - synced}"
    for name in menus:
        assert any(f'"{name}"' in cell for cell in documented), f"context menu {name} is not in README"
