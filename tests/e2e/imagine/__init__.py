"""/imagine end to end."""
