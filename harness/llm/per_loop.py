"""Event loops for code that runs under several: one object per running loop, and a loop run to its end.

complete_many starts a fresh loop per batch, and asyncio primitives belong to one loop. Objects are
dropped once their loop is closed: a weak-keyed map would not do, since each object holds its loop
strongly and would keep it alive forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def run_to_end(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, quiet when Ctrl-C or SIGTERM stops it.

    The signal handler raises in whichever task runs; asyncio.run then reports each task that ended with
    it as an "unhandled exception during asyncio.run() shutdown" traceback, although the same exception
    reaches the caller, which prints the one line a stopped run gets.
    """
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(_quiet_on_interrupt)
        return runner.run(main)


def _quiet_on_interrupt(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), KeyboardInterrupt):  # harness.errors.Terminated is one too
        loop.default_exception_handler(context)


class PerLoop(Generic[T]):
    """Lazily makes one `factory()` object for each running event loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._items: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}

    def get(self) -> T:
        """The running loop's object (call from a coroutine)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for key in [key for key, (owner, _) in self._items.items() if owner.is_closed()]:
                del self._items[key]
            entry = self._items.get(id(loop))
            if entry is None or entry[0] is not loop:
                entry = self._items[id(loop)] = (loop, self._factory())
            return entry[1]

    def pop(self) -> T | None:
        """Forget the running loop's object and return it (None when it had none): to close it in its loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._items.get(id(loop))
            if entry is None or entry[0] is not loop:
                return None
            del self._items[id(loop)]
            return entry[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
