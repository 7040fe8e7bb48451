"""/ask end to end."""
