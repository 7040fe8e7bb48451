"""Data files shipped with the bot (the price table)."""
