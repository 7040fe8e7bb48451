"""Channel summaries (/tldr's core): token-budgeted chunks summarised, then combined."""
