"""The Discord edge: the Bot subclass, admission, replies and failures, text helpers, in-flight work."""
