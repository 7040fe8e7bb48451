"""/transcribe end to end."""
