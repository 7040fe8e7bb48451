"""Start-up, the check command, and failures outside commands."""
