"""The mod-log entry's moderator buttons, "Timeout author" and "False positive"; they survive restarts."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import discord
from discord import app_commands

from bot import errors
from bot.discord_io.client import OpenAIBot
from bot.discord_io.failures import is_expected, send_failure
from bot.i18n import format_span, translate
from cogs.moderation.effects import timeout_member

log = logging.getLogger(__name__)


class ModlogButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"modlog:(?P<kind>timeout|fp):(?P<action>\d+)"
):
    """Permissions are checked when pressed: both need Manage Messages; "Timeout author" also needs Timeout
    Members, so the button never lends the bot's own permission to someone who could not time the author
    out by hand."""

    def __init__(self, kind: str, action_id: int, locale: str | None = None) -> None:
        # The label is in the mod-log's language; a pressed button is rebuilt from its id alone.
        label = translate(
            "modlog.button.timeout" if kind == "timeout" else "modlog.button.false_positive", locale
        )
        style = discord.ButtonStyle.danger if kind == "timeout" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"modlog:{kind}:{action_id}"))
        self.kind = kind
        self.action_id = action_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ModlogButton:
        return cls(match["kind"], int(match["action"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            if interaction.guild is None or not interaction.permissions.manage_messages:
                raise app_commands.MissingPermissions(["manage_messages"])
            if self.kind == "timeout" and not interaction.permissions.moderate_members:
                raise app_commands.MissingPermissions(["moderate_members"])
            if self.kind == "timeout":
                await self.timeout_author(interaction)
            else:
                await self.false_positive(interaction)
        except Exception as exc:
            if not is_expected(exc):
                log.exception("a mod-log button failed (action %s)", self.action_id)
            await send_failure(interaction, exc)

    async def timeout_author(self, interaction: discord.Interaction[Any]) -> None:
        bot: OpenAIBot = interaction.client
        plan = await bot.services.review.plan_timeout(interaction.guild_id, self.action_id)
        policy = await bot.services.channel_moderation.policies.get(plan.record.guild_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        reason = translate(
            "moderation.audit.button",
            await bot.modlog.locale_for(interaction.guild_id),
            action=self.action_id,
            moderator=str(interaction.user),
        )
        if not await timeout_member(bot, policy, plan.record.author_id, plan.seconds, reason):
            raise errors.InvalidInput(message_id="input.moderation.timeout_failed")
        await bot.services.review.timed_out(plan)
        locale = str(interaction.locale)
        await interaction.followup.send(
            translate(
                "modlog.timed_out",
                locale,
                member=f"<@{plan.record.author_id}>",
                span=format_span(plan.seconds, locale),
            ),
            ephemeral=True,
        )

    async def false_positive(self, interaction: discord.Interaction[Any]) -> None:
        bot: OpenAIBot = interaction.client
        result = await bot.services.review.false_positive(
            interaction.guild_id, self.action_id, interaction.user.id
        )
        locale = str(interaction.locale)
        text = (
            translate("modlog.false_positive.recorded", locale, count=result.strikes_cleared)
            if result.marked
            else translate("modlog.false_positive.already", locale)
        )
        await interaction.response.send_message(text, ephemeral=True)
        if result.marked and interaction.message is not None and interaction.message.embeds:
            embed = interaction.message.embeds[0]
            embed.colour = discord.Colour.light_grey()
            # Added to the shared entry: the mod-log's language, not the reviewer's.
            public = await bot.modlog.locale_for(interaction.guild_id)
            embed.add_field(
                name=translate("modlog.field.review", public),
                value=translate("modlog.review.false_positive", public, reviewer=f"<@{interaction.user.id}>"),
                inline=False,
            )
            with contextlib.suppress(discord.HTTPException):
                await interaction.message.edit(embed=embed)


def action_view(action_id: int, locale: str | None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ModlogButton("timeout", action_id, locale))
    view.add_item(ModlogButton("fp", action_id, locale))
    return view
