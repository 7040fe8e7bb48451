"""The core: settings, the OpenAI gateway, the store, moderation and Discord text helpers."""
