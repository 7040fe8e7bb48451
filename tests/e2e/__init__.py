"""End-to-end tests: the real bot against the fake Discord and fake OpenAI, grouped by feature."""
