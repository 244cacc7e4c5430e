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
