"""Conversations: per-channel memory, personas, context assembly and vision input."""
