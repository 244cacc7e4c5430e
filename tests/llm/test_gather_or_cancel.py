"""When the rater is down, one failed call ends a feature's concurrent calls without leftovers: none of them
is still running when asyncio.run shuts down, so no "unhandled exception during asyncio.run() shutdown"
traceback comes before the clear error (issue #18, item 6)."""

import asyncio
import logging

import pytest

from harness.errors import LLMError
from harness.llm.per_loop import gather_or_cancel


async def _fails_at_once():
    raise LLMError("the rater has not answered a single call")


async def _loses_its_cancellation():
    # Python 3.11's asyncio.wait_for returns the inner result when a cancellation arrives as it finishes:
    # the call then goes on and fails with its own error, as litellm calls to a refused port do.
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        raise LLMError("a later call failed too") from None


def test_the_first_failure_is_raised_and_no_call_outlives_the_batch(caplog):
    async def feature():
        return await gather_or_cancel(_fails_at_once(), _loses_its_cancellation())

    caplog.set_level(logging.ERROR, logger="asyncio")
    with pytest.raises(LLMError, match="not answered a single call"):
        asyncio.run(feature())
    assert not [record for record in caplog.records if record.name == "asyncio"], caplog.text


def test_results_come_in_order():
    async def value(number: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return number

    assert asyncio.run(gather_or_cancel(value(1, 0.02), value(2, 0.0), value(3, 0.01))) == [1, 2, 3]
