"""Tests of bot.openai_api."""
