"""Helpers the tests share: the test server, moderation steps (the fakes and the driver live in testkit)."""
