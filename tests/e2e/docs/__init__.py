"""The README checked against the running bot."""
