"""Tests of bot.summary."""
