"""A fake OpenAI API (chat, moderation, images, audio, embeddings, models) that the real openai client talks to."""

from .fake import ApiError, FakeOpenAI, Injection, RecordedRequest

__all__ = ["ApiError", "FakeOpenAI", "Injection", "RecordedRequest"]
