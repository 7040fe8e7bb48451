"""Tests of bot.util."""
