"""Small helpers with no domain: asyncio tasks and durations as people type them."""
