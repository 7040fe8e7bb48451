"""Automatic moderation: the channel listener, mod-log buttons and the /moderation admin commands."""

from __future__ import annotations

from bot.discord_io.client import OpenAIBot
from cogs.moderation.actions import ModerationActions
from cogs.moderation.buttons import ModlogButton
from cogs.moderation.commands import ModerationCommands
from cogs.moderation.listener import DRAIN_LEASE, CatchUpLimits, ModerationEvents


async def setup(bot: OpenAIBot) -> None:
    moderator = bot.services.channel_moderation
    actions = ModerationActions(bot, moderator)
    catch_up = CatchUpLimits(bot.settings.moderation_catchup_hours, bot.settings.moderation_catchup_messages)
    await bot.add_cog(
        ModerationEvents(
            bot,
            moderator,
            actions,
            bot.settings.moderation_retry_interval,
            catch_up,
            drain_lease=bot.services.leases.keeper(DRAIN_LEASE),
        )
    )
    await bot.add_cog(ModerationCommands(moderator))
    bot.add_dynamic_items(ModlogButton)


async def teardown(bot: OpenAIBot) -> None:
    bot.remove_dynamic_items(ModlogButton)
