"""Native Discord voice messages: one Ogg Opus attachment with its duration and waveform, flag IS_VOICE_MESSAGE."""

from __future__ import annotations

import io
from typing import Any

import discord
from discord.http import handle_message_parameters

IS_VOICE_MESSAGE = 1 << 13
THREAD_CHANNEL_TYPES = frozenset({10, 11, 12})


class VoiceFile(discord.File):
    """A file whose attachment entry carries `duration_secs` and `waveform` (discord.py sends neither)."""

    def __init__(self, data: bytes, filename: str, *, seconds: float, waveform_base64: str) -> None:
        super().__init__(io.BytesIO(data), filename=filename)
        self.seconds = seconds
        self.waveform_base64 = waveform_base64

    def to_dict(self, index: int) -> dict[str, Any]:
        payload = super().to_dict(index)
        payload["duration_secs"] = round(self.seconds, 2)
        payload["waveform"] = self.waveform_base64
        return payload


def can_post_voice_message(interaction: discord.Interaction[Any]) -> bool:
    """Whether the bot itself may post a voice message where this interaction came from.

    Voice messages are posted as channel messages (interaction responses and webhooks lose the waveform),
    which needs the bot in the server with Send Messages (in threads, Send Messages in Threads), Attach
    Files and Send Voice Messages. DMs and user-installed uses get an ordinary audio attachment instead.
    """
    if interaction.guild is None or interaction.channel_id is None:
        return False
    permissions = interaction.app_permissions
    channel_type = getattr(getattr(interaction.channel, "type", None), "value", None)
    can_send = (
        permissions.send_messages_in_threads
        if channel_type in THREAD_CHANNEL_TYPES
        else permissions.send_messages
    )
    return bool(can_send and permissions.attach_files and permissions.send_voice_messages)


async def post_voice_message(
    client: discord.Client,
    guild_id: int,
    channel_id: int,
    data: bytes,
    *,
    seconds: float,
    waveform_base64: str,
    filename: str = "voice-message.ogg",
) -> str:
    """POST the voice message in the channel; returns its jump URL. discord.HTTPException on refusal."""
    flags = discord.MessageFlags._from_value(IS_VOICE_MESSAGE)
    voice_file = VoiceFile(data, filename, seconds=seconds, waveform_base64=waveform_base64)
    with handle_message_parameters(
        file=voice_file, flags=flags, allowed_mentions=discord.AllowedMentions.none()
    ) as params:
        message = await client.http.send_message(channel_id, params=params)
    # REST answers do not always carry guild_id: the link is built from what the caller knows.
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message['id']}"
