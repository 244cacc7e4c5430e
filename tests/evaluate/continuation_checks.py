"""What ContinuationEngine answers to concurrent asks, and what the unshared computation gives (the FADE
reference's step: one feature at a time, every row computed), for the token-for-token equality tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from harness.config import FaithfulnessConfig
from harness.evaluate.fade.continuations import ContinuationEngine, generate_continuations

FACTORS = FaithfulnessConfig().modification_factors  # every default factor, 1 (no change for neurons) included
TEXTS = [
    "The os module provides a portable way of using operating system dependent functionality.",
    "Return the number of items in a container, or",
    "import sys",
    "A list comprehension consists of brackets containing an expression followed by a for clause.",
    "Exceptions raised in the try clause are handled by the except clause",
]


def engine_continuations(loaded_model, site, asks, generation, *, batch_rows):
    """The engine's answers to concurrent asks [(feature, reference, positions)] over TEXTS and FACTORS, and the engine."""

    async def run():
        with ThreadPoolExecutor(1) as model_thread:
            loop = asyncio.get_running_loop()

            def on_model(function, *args, **kwargs):
                return loop.run_in_executor(model_thread, lambda: function(*args, **kwargs))

            engine = ContinuationEngine(loaded_model, site, TEXTS, on_model, batch_rows=batch_rows, **generation)
            answers = await asyncio.gather(
                *(
                    engine.continuations(feature, reference, positions, FACTORS)
                    for feature, reference, positions in asks
                )
            )
            return answers, engine

    return asyncio.run(run())


def unshared_continuations(loaded_model, site, feature, reference, positions, generation):
    """The continuations of TEXTS at `positions` under every factor, computed one feature at a time."""
    prompts = [TEXTS[position] for position in positions]
    return generate_continuations(
        loaded_model, site, feature, reference, prompts, FACTORS, batch_rows=len(prompts) * len(FACTORS), **generation
    ).texts


def assert_rows_followed_and_left(engine, *, steered_rows, some_to_the_end=True):
    """The equality checked covers the ways a steered row decodes: some rows leave the unchanged continuation
    at once, some mid-way (their lower layers' cache then built from the followed states), and, with
    `some_to_the_end`, some follow it to the end."""
    followed = engine.followed
    left = sum(followed.left_after.values())
    assert left < steered_rows if some_to_the_end else left == steered_rows, followed
    assert followed.left_after[0] > 0 and any(n > 0 for n in followed.left_after), followed
    assert followed.reused > 0 and followed.computed > 0, followed
