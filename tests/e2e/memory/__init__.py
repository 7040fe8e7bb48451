"""The memory commands end to end."""
