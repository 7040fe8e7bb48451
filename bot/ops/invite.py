"""The OAuth2 invite URL with exactly the permissions the bot's features use."""

from __future__ import annotations

import base64
import binascii
import json

import discord

from bot.settings import Settings


def required_permissions() -> discord.Permissions:
    return discord.Permissions(
        view_channel=True,  # see the channels it answers and moderates in
        send_messages=True,  # answers, warnings, mod-log entries
        send_messages_in_threads=True,  # conversations in threads and forum posts
        embed_links=True,  # mod-log embeds
        attach_files=True,  # generated images, long transcripts, usage charts
        read_message_history=True,  # /tldr and reply context
        manage_messages=True,  # delete flagged messages
        moderate_members=True,  # timeouts after repeated strikes
    )


def application_id_from_token(token: str) -> int | None:
    """A bot token's first segment is the base64 of its application (user) id."""
    first = token.split(".", 1)[0]
    try:
        return int(base64.b64decode(first + "=" * (-len(first) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def invite_url(settings: Settings, application_id: int | None = None) -> str:
    app_id = application_id or application_id_from_token(settings.discord_token)
    if app_id is None:
        return (
            "Could not read the application id from DISCORD_TOKEN. Copy the Application ID from the "
            "developer portal and run `python -m bot invite --application-id <APP_ID>`, or open: "
            "https://discord.com/oauth2/authorize?client_id=<APP_ID>"
            f"&scope=bot+applications.commands&permissions={required_permissions().value}"
        )
    return discord.utils.oauth_url(
        app_id, permissions=required_permissions(), scopes=("bot", "applications.commands")
    )


def invite(settings: Settings, *, application_id: int | None = None, as_json: bool = False) -> int:
    """`python -m bot invite`: needs only the application id (from DISCORD_TOKEN or the flag)."""
    app_id = application_id or application_id_from_token(settings.discord_token)
    url = invite_url(settings, application_id)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": app_id is not None,
                    "application_id": app_id,
                    "permissions": required_permissions().value,
                    "url": url if app_id is not None else None,
                    "error": None if app_id is not None else url,
                }
            )
        )
    else:
        print(url)
    return 0 if app_id is not None else 1
