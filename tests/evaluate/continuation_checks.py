"""What ContinuationEngine answers to concurrent asks, and what the unshared computation gives (the FADE
reference's step: one feature at a time, every row computed), for the token-for-token equality tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from harness.evaluate.fade.continuations import ContinuationEngine, generate_continuations


def engine_continuations(loaded_model, site, texts, asks, factors, batch_rows, generation):
    """The engine's answers to concurrent asks [(feature, reference, positions)], and the engine."""

    async def run():
        with ThreadPoolExecutor(1) as model_thread:
            loop = asyncio.get_running_loop()

            def on_model(function, *args, **kwargs):
                return loop.run_in_executor(model_thread, lambda: function(*args, **kwargs))

            engine = ContinuationEngine(loaded_model, site, texts, on_model, batch_rows=batch_rows, **generation)
            answers = await asyncio.gather(
                *(
                    engine.continuations(feature, reference, positions, factors)
                    for feature, reference, positions in asks
                )
            )
            return answers, engine

    return asyncio.run(run())


def unshared_continuations(loaded_model, site, texts, feature, reference, positions, factors, generation):
    prompts = [texts[position] for position in positions]
    return generate_continuations(
        loaded_model, site, feature, reference, prompts, factors, batch_rows=len(prompts) * len(factors), **generation
    ).texts
