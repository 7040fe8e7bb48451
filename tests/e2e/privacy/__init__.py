"""Privacy end to end."""
