"""Typed settings read from the environment and `.env`, with errors that name the variable.

Each domain's settings live in one section class (bot/settings/sections.py); `Settings` composes them
flat and frozen. `python -m bot.settings` regenerates `.env.example`, the README table and docs/settings.md.
"""

from bot.settings.model import (
    MODEL_FAMILIES,
    Settings,
    SettingsError,
    documented_settings,
    load_settings,
    variables,
)
from bot.settings.sections import DEFAULT_DATABASE_URL, SECTIONS

__all__ = [
    "DEFAULT_DATABASE_URL",
    "MODEL_FAMILIES",
    "SECTIONS",
    "Settings",
    "SettingsError",
    "documented_settings",
    "load_settings",
    "variables",
]
