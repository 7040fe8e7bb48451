"""Small asyncio helpers shared by the core and the cogs."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Future[Any]) -> None:
    """Cancel a task whose outcome no longer matters, wait for it to end, and retrieve what it raised."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()
