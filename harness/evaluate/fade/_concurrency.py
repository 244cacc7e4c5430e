"""Concurrent LLM calls of one feature that end together: a failure cancels the others and waits for them.

`asyncio.gather` raises the first failure but leaves the other calls running with no owner; asyncio.run
then cancels them at shutdown, and one that fails there (Python 3.11's wait_for can lose a cancellation
that arrives as a call finishes) prints an "unhandled exception during asyncio.run() shutdown" traceback
before the clear error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather_or_cancel(*awaitables: Awaitable[Any]) -> list[Any]:
    """The results in order, as asyncio.gather; on the first failure the others are cancelled and awaited
    (what they end with is dropped), then the failure is raised as itself."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
