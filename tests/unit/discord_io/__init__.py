"""Tests of bot.discord_io's pure helpers."""
