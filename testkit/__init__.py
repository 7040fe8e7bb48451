"""Fake Discord and OpenAI servers for offline tests."""
