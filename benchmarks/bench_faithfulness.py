"""Faithfulness's steered generation on the FADE reference's own setup: ours against the reference's shape
and against the compute floor, in one run.

Setup (the issue's): 1,000 python-docs samples of at most 250 characters, SmolLM2-135M neurons of layer 15's
MLP (`model.layers.15.mlp.act_fn`, features 0..N-1), FADE's faithfulness defaults (50 prompts, factors
-50 -10 -1 0 1 10 50, 30 greedy tokens, 128 rows per generate call), prompts cut to 128 tokens. Timed:
  reference shape  one feature at a time, its own prompts, every (prompt, factor) row computed
                   (`generate_continuations`, as the FADE reference's step does it);
  ours             every feature at once through the ContinuationEngine: shared prompts, factor 1 continued
                   once per prompt, batches across features, the below-site pass of each prompt and of its
                   unchanged continuation reused by every steered row while it decodes the same tokens;
  floor            bare batched forwards (no decoding loop, no steering) over exactly the tokens ours must
                   compute: each row ours generates, prompt plus its 30 tokens, logits for those 30 only, with
                   the prompts' below-site part once per prompt and the generated tokens' below-site part only
                   where ours does not reuse the unchanged continuation's (those parts estimated by their share
                   of layers).
Peak memory (process RSS above its level before the phase, sampled every 10 ms) is reported for ours with
all features and with one, to show it is set by the batch, not by the number of features.
With --end-to-end, FADE as a whole per feature (scripted loopback rater, no latency, no LLM cache) with
faithfulness forced (gini_threshold 0) and without it.

    python benchmarks/bench_faithfulness.py [--features 4] [--prompts 50] [--end-to-end]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from harness.config import HarnessConfig, parse_config
from harness.corpus import load_corpus
from harness.evaluate import evaluate_descriptions
from harness.evaluate.fade.continuations import ContinuationEngine, generate_continuations
from harness.evaluate.fade.faithfulness import faithfulness_prompts
from harness.evaluate.fade.prompt_prefix import site_layer
from harness.evaluate.fade.sampling import random_subset
from harness.model import load_subject_model
from harness.sites import build_site

KEY_ENV = "BENCH_FAITHFULNESS_LOOPBACK_KEY"
MODULE = "model.layers.15.mlp.act_fn"


def make_config(
    features: list[int], prompts: int, cache_dir: str, api_base: str = "http://127.0.0.1:9", **fade: object
) -> HarnessConfig:
    return parse_config(
        {
            "corpus": {"num_samples": 1000, "max_chars": 250},
            "site": {"kind": "neuron", "module": MODULE, "features": features},
            "activations": {"cache_dir": cache_dir},
            "fade": {
                "rater": {"model": "openai/scripted", "api_base": api_base, "api_key_env": KEY_ENV, "cache": False},
                "faithfulness": {"num_samples": prompts, "enabled": fade.pop("faithfulness", True)},
                **fade,
            },
        }
    )


class PeakMemory:
    """The process's peak RSS above its level at the start, sampled on a thread."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        self._base = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, (self._process.memory_info().rss - self._base) / 2**20)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def reference_shape(loaded, site, texts, config, features) -> float:
    settings = config.fade.faithfulness
    start = time.perf_counter()
    for feature in features:
        # The reference's draw, per feature (here from each feature's own stream).
        positions = random_subset(
            len(texts), settings.num_samples, rng=np.random.default_rng([config.fade.seed, feature])
        )
        generate_continuations(
            loaded,
            site,
            feature,
            None,
            [texts[p] for p in positions],
            settings.modification_factors,
            generation_length=settings.generation_length,
            max_prompt_tokens=config.activations.max_length,
            batch_rows=settings.generation_batch_size,
        )
    return time.perf_counter() - start


def ours(loaded, site, texts, config, features) -> tuple[float, ContinuationEngine, list[int]]:
    settings = config.fade.faithfulness
    positions = faithfulness_prompts(len(texts), settings, config.fade.seed)[0].tolist()

    async def run() -> ContinuationEngine:
        with ThreadPoolExecutor(1) as model_thread:
            loop = asyncio.get_running_loop()

            def on_model(function, *args, **kwargs):
                return loop.run_in_executor(model_thread, lambda: function(*args, **kwargs))

            engine = ContinuationEngine(
                loaded,
                site,
                texts,
                on_model,
                generation_length=settings.generation_length,
                max_prompt_tokens=config.activations.max_length,
                batch_rows=settings.generation_batch_size,
            )
            await asyncio.gather(
                *(engine.continuations(f, None, positions, settings.modification_factors) for f in features)
            )
            return engine

    start = time.perf_counter()
    engine = asyncio.run(run())
    return time.perf_counter() - start, engine, positions


def bare_forward(loaded, rows: list[list[int]], batch_rows: int, logits: int) -> float:
    """Seconds of plain batched forwards over token rows (left-padded, no cache), `logits` kept per row."""
    pad = loaded.tokenizer.pad_token_id
    start = time.perf_counter()
    for first in range(0, len(rows), batch_rows):
        batch = rows[first : first + batch_rows]
        width = max(len(row) for row in batch)
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in batch])
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in batch])
        with torch.inference_mode():
            loaded.model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=logits)
    return time.perf_counter() - start


def floor(loaded, texts, config, positions, rows_per_prompt: int, shared_layers: int, reused_share: float):
    """The compute floor of ours: bare forwards over exactly the tokens it must compute, and their count.

    Measured: every row ours generates, prompt plus its generated tokens, in one forward each (logits for the
    generated ones), batched like ours; less the share `shared_layers / num_layers` of the rows' prompt
    forward, plus that share of one forward over each prompt (the below-site part computed once); less that
    share of the generated tokens' forward for the `reused_share` of them whose below-site pass ours reuses
    from the unchanged continuation.
    """
    settings = config.fade.faithfulness
    length = settings.generation_length
    encoded = loaded.tokenizer([texts[p] for p in positions], truncation=True, max_length=config.activations.max_length)
    prompts = sorted(encoded["input_ids"], key=len)
    rows = [ids for ids in prompts for _ in range(rows_per_prompt)]
    full = bare_forward(loaded, [ids + [ids[-1]] * length for ids in rows], settings.generation_batch_size, length)
    share = shared_layers / loaded.model.config.num_hidden_layers
    prompt_rows = bare_forward(loaded, rows, settings.generation_batch_size, 1)
    below_once = bare_forward(loaded, prompts, settings.generation_batch_size, 1) * share
    generated = full - prompt_rows  # the generated tokens' share of the full forwards
    tokens = sum(len(ids) + length for ids in rows)
    return full - prompt_rows * share + below_once - generated * share * reused_share, tokens


def end_to_end(features: list[int], prompts: int, cache_dir: str) -> dict[str, float]:
    from bench_llm import start_server

    server, api_base = start_server(0.0)
    seconds = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-faithfulness-") as folder:
            table = pd.DataFrame({"feature": features, "description": ["import statements"] * len(features)})
            runs = {
                "with faithfulness (forced)": {"gini_threshold": 0.0},
                "without faithfulness": {"faithfulness": False},
            }
            for name, fade in runs.items():
                config = make_config(features, prompts, cache_dir, api_base, **fade)
                start = time.perf_counter()
                evaluate_descriptions(config, table, Path(folder) / name, progress=False)
                seconds[name] = (time.perf_counter() - start) / len(features)
    finally:
        server.kill()
        server.wait()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=50, help="faithfulness.num_samples")
    parser.add_argument("--end-to-end", action="store_true", help="also time FADE as a whole per feature")
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "sk-loopback-bench")
    logging.getLogger("harness.llm.client").setLevel(logging.ERROR)
    features = list(range(args.features))
    with tempfile.TemporaryDirectory(prefix="bench-faithfulness-cache-") as cache_dir:
        config = make_config(features, args.prompts, cache_dir)
        loaded = load_subject_model(config.model)
        corpus = load_corpus(config.corpus, loaded.tokenizer)
        site = build_site(config.site, loaded)
        texts = corpus["text"].tolist()
        factors = config.fade.faithfulness.modification_factors
        ours(loaded, site, texts, config, features[:1])  # warm-up: first-call costs belong to neither side

        with PeakMemory() as one_memory:
            ours(loaded, site, texts, config, features[:1])
        with PeakMemory() as memory:
            ours_s, engine, positions = ours(loaded, site, texts, config, features)
        reference_s = reference_shape(loaded, site, texts, config, features)
        rows_per_prompt = engine.rows_generated // len(positions)
        shared_layers = site_layer(loaded, site) or 0
        fed = engine.rows_generated * (config.fade.faithfulness.generation_length - 1)  # tokens fed back per row
        reused_share = engine.followed.reused / fed
        floor_s, tokens = floor(loaded, texts, config, positions, rows_per_prompt, shared_layers, reused_share)
        timings = end_to_end(features, args.prompts, cache_dir) if args.end_to_end else {}

    n = len(features)
    reference_rows = n * len(positions) * len(factors)
    print(f"{n} features x {len(positions)} prompts x {len(factors)} factors x {config.fade.faithfulness.generation_length} tokens, "
          f"{MODULE}, {torch.get_num_threads()} torch threads")  # fmt: skip
    print(f"reference shape: {reference_s:8.1f} s  {reference_s / n:6.1f} s/feature  {reference_rows} rows")
    print(
        f"ours:            {ours_s:8.1f} s  {ours_s / n:6.1f} s/feature  {engine.rows_generated} rows, "
        f"{engine.generate_calls} generate calls  -> {reference_s / ours_s:.2f}x faster than the reference shape"
    )
    print(
        f"floor (bare forwards, below-site share scaled by layers): {floor_s:8.1f} s  {floor_s / n:6.1f} s/feature  "
        f"{tokens} row tokens  -> ours is {ours_s / floor_s:.2f}x the floor"
    )
    print(
        f"below the site, ours reused {engine.followed.reused} of {fed} fed tokens ({reused_share:.0%}) from the "
        f"unchanged continuations; rows leaving them after n tokens: {dict(sorted(engine.followed.left_after.items()))}"
    )
    print(f"peak memory of ours: {memory.peak_mb:.0f} MiB with {n} features, {one_memory.peak_mb:.0f} MiB with 1")
    for name, seconds in timings.items():
        print(f"FADE per feature, {name}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
