"""Event loops for code that runs under several: one object per running loop, a loop run to its end, and a
loop kept on a thread of its own.

LLMClient runs its synchronous batches in one long-lived loop (LoopThread), so the connections its SDK
clients open serve every batch; FADE runs its calls in a loop of its own (run_to_end). asyncio primitives and
HTTP connection pools belong to one loop, hence PerLoop. Objects are dropped once their loop is closed: a
weak-keyed map would not do, since each object holds its loop strongly and would keep it alive forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# The PerLoop objects with a `close`: what each loop's end closes (close_loop_objects).
_CLOSED_WITH_THEIR_LOOP: weakref.WeakSet[PerLoop[Any]] = weakref.WeakSet()


def run_to_end(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, quiet when Ctrl-C or SIGTERM stops it, closing the loop's PerLoop objects at its end.

    The signal handler raises in whichever task runs; asyncio.run then reports each task that ended with
    it as an "unhandled exception during asyncio.run() shutdown" traceback, although the same exception
    reaches the caller, which prints the one line a stopped run gets.
    """
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(_quiet_on_interrupt)
        return runner.run(_then_close_loop_objects(main))


async def _then_close_loop_objects(main: Awaitable[T]) -> T:
    try:
        return await main
    finally:
        await close_loop_objects()


async def close_loop_objects() -> None:
    """Close the running loop's object of every PerLoop that has a `close` (an SDK client's connections): its
    connections would otherwise stay open until garbage collection, the loop closed under them."""
    # A connection that fails to close is gone with the loop anyway.
    await asyncio.gather(*(per_loop.aclose() for per_loop in list(_CLOSED_WITH_THEIR_LOOP)), return_exceptions=True)


async def gather_or_cancel(*awaitables: Awaitable[Any]) -> list[Any]:
    """The results in order, as asyncio.gather; on the first failure the others are cancelled and awaited
    (what they end with is dropped), then the failure is raised as itself.

    `asyncio.gather` raises the first failure but leaves the other calls running with no owner; the loop's
    end then cancels them, and one that fails there (Python 3.11's wait_for can lose a cancellation that
    arrives as a call finishes) prints an "unhandled exception during asyncio.run() shutdown" traceback
    before the clear error.
    """
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _quiet_on_interrupt(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), KeyboardInterrupt):  # harness.errors.Terminated is one too
        loop.default_exception_handler(context)


class PerLoop(Generic[T]):
    """Lazily makes one `factory()` object for each running event loop.

    Args:
        factory: makes the object of a loop.
        close: closes an object in its loop; then each loop's object is closed when run_to_end or a
            LoopThread ends that loop (close_loop_objects).
    """

    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[None]] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._lock = threading.Lock()
        self._items: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}
        if close is not None:
            _CLOSED_WITH_THEIR_LOOP.add(self)

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

    async def aclose(self) -> None:
        """Forget the running loop's object and close it (when it has one and this PerLoop a `close`)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._items.get(id(loop))
            if entry is None or entry[0] is not loop:
                return
            del self._items[id(loop)]
        if self._close is not None:
            await self._close(entry[1])

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class LoopThread:
    """One event loop on a daemon thread, kept from one `run` to the next, so what lives in it (an SDK client's
    open connections) serves them all; `close()` closes its PerLoop objects and ends it. Started lazily, and
    again in a forked child (the parent's thread is not there).

    Args:
        name: the thread's name.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """`main`'s result, run in the thread's loop while the calling thread (any, one with a running loop
        too) waits. When the caller gets Ctrl-C or SIGTERM meanwhile, `main` is cancelled and has ended before
        that exception goes on, so no call outlives it and nothing is reported but the one line.

        Raises:
            RuntimeError: called from the thread's own loop, which would wait for itself forever.
        """
        loop = self._started()
        if threading.current_thread() is self._thread:
            main.close()
            raise RuntimeError("LoopThread.run was called from its own loop; await the coroutine instead")
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        task: asyncio.Task[T] | None = None

        def start() -> None:
            nonlocal task
            task = loop.create_task(main)
            task.add_done_callback(lambda done: _copy_outcome(done, outcome))

        loop.call_soon_threadsafe(start)
        try:
            return outcome.result()
        except BaseException:
            if not outcome.done():  # this thread was interrupted: end `main` first (call_soon keeps the order)
                loop.call_soon_threadsafe(lambda: task is not None and task.cancel())
                concurrent.futures.wait([outcome])
            raise

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._loop.set_exception_handler(_quiet_on_interrupt)
                self._pid = os.getpid()
                self._thread = threading.Thread(target=_serve, args=(self._loop,), name=self._name, daemon=True)
                self._thread.start()
            return self._loop

    def close(self) -> None:
        """Cancel what still runs in the loop, close its PerLoop objects, end the loop and its thread."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = None
        if loop is None or thread is None or pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:  # closed from the loop itself (garbage collection there)
            thread.join()


def _copy_outcome(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        outcome.cancel()
        outcome.set_running_or_notify_cancel()  # what wakes concurrent.futures.wait (cancel() alone does not)
    elif task.exception() is not None:
        outcome.set_exception(task.exception())
    else:
        outcome.set_result(task.result())


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """A LoopThread's body: its loop runs until close() stops it, then ends as asyncio.run ends one."""
    asyncio.set_event_loop(loop)
    while True:
        try:
            loop.run_forever()
            break
        except (KeyboardInterrupt, SystemExit):
            # Raised by a task, which holds it: whoever waits on that task gets it, and the loop goes on.
            continue
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(close_loop_objects())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
