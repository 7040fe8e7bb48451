"""Reliability suite: injected OpenAI, Discord, process and database faults, hostile input, properties, load."""
