"""/tldr end to end."""
