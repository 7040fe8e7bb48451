"""The OpenAI edge: the SDK adapter, the call types, error mapping with retries, streaming and tokens."""
