"""The test suite: the real bot against fake Discord and fake OpenAI servers on 127.0.0.1."""
