"""Access control end to end."""
