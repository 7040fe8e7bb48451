"""Discord glue: one extension per capability (parse the interaction, call the core, render)."""
