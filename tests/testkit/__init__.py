"""Self-tests of the fake Discord and fake OpenAI."""
