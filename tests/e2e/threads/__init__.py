"""Threads /ask starts, and talking to the bot in them."""
