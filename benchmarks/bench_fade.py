"""FADE over 20 features with a slow rater: the pipeline against the same code run one feature at a time.

The rater is the loopback server in its own process, answering every request after a fixed latency
(200 ms by default), LLM cache off. Subject model: the embedded SmolLM2-135M, 20 MLP neurons of layer 3,
300 python-docs samples, each neuron described as "mentions '<word>'". Timed, in one run:
  pipeline     all 20 features in one call: one activation pass, features concurrent, rater concurrency 64;
  sequential   the reference's shape: one call per feature, one LLM request in flight (concurrency 1);
               run on --sequential-features features and scaled to 20 (each feature costs the same work);
  per-feature  one call per feature as above, but with concurrency 64 inside each feature.
Activation caches are warmed before any timing (extraction is not what is compared: a warm cache serves
both sides alike); the per-feature runs' scores are checked equal to the pipeline's.
Target: pipeline >= 10x faster than sequential.

    python benchmarks/bench_fade.py [--features 20] [--latency 0.2] [--sequential-features 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_llm import start_server

from harness.activations import extract_activations
from harness.config import HarnessConfig, parse_config
from harness.corpus import load_corpus
from harness.evaluate import evaluate_descriptions
from harness.model import load_subject_model
from harness.sites import build_site

KEY_ENV = "BENCH_FADE_LOOPBACK_KEY"
CORPUS_SAMPLES = 300
NEURONS = [3, 17, 42, 101, 150, 222, 287, 333, 404, 470, 512, 600, 678, 745, 801, 888, 950, 1024, 1200, 1400]
WORDS = ["function", "return", "value", "object", "string", "module", "class", "list", "file", "error",
         "method", "argument", "type", "default", "name", "data", "call", "number", "true", "line"]  # fmt: skip


def make_config(api_base: str, cache_dir: str, features: list[int], concurrency: int) -> HarnessConfig:
    return parse_config(
        {
            "corpus": {"num_samples": CORPUS_SAMPLES},
            "site": {"kind": "neuron", "module": "model.layers.3.mlp.act_fn", "features": features},
            "activations": {"max_length": 64, "skip_first_positions": 1, "cache_dir": cache_dir},
            "fade": {
                "rater": {"model": "openai/scripted", "api_base": api_base, "api_key_env": KEY_ENV, "cache": False,
                          "concurrency": concurrency, "timeout_s": 30},
                # FADE defaults except the natural sample count (half the corpus, so the sparse retry has
                # samples left to draw) and a small steering run: the comparison is about the LLM
                # orchestration, not about CPU generation.
                "num_samples": CORPUS_SAMPLES // 2,
                "faithfulness": {"num_samples": 5, "generation_length": 8, "modification_factors": [-10, 0, 10]},
            },
        }
    )  # fmt: skip


def descriptions(features: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"feature": features, "description": [f"mentions '{WORDS[NEURONS.index(f)]}'" for f in features]}
    )


def warm_activations(config: HarnessConfig, feature_sets: list[list[int]]) -> None:
    loaded = load_subject_model(config.model)
    corpus = load_corpus(config.corpus, loaded.tokenizer)
    site = build_site(config.site, loaded)
    for features in feature_sets:
        extract_activations(loaded, site, corpus, config.activations, features=features, progress=False)


def timed_run(config: HarnessConfig, table: pd.DataFrame, output_dir: Path):
    start = time.perf_counter()
    result = evaluate_descriptions(config, table, output_dir, progress=False)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the rater takes per request")
    parser.add_argument("--sequential-features", type=int, default=3, help="features run one at a time, then scaled")
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "sk-loopback-bench")
    logging.getLogger("harness.llm.client").setLevel(logging.ERROR)  # the price-map warning of the scripted model
    features = NEURONS[: args.features]
    few = features[: args.sequential_features]
    server, api_base = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fade-") as folder:
            root = Path(folder)
            cache = str(root / "cache")
            pipeline_config = make_config(api_base, cache, features, concurrency=64)
            warm_activations(pipeline_config, [features, *([f] for f in few)])

            pipeline_s, pipeline = timed_run(pipeline_config, descriptions(features), root / "pipeline")
            requests = sum(result.llm_requests for result in pipeline.results.values())
            computed_faithfulness = sum(result.scores.faithfulness.defined for result in pipeline.results.values())

            runs = {}
            for name, concurrency in (("sequential", 1), ("per-feature", 64)):
                seconds = 0.0
                for feature in few:
                    config = make_config(api_base, cache, [feature], concurrency)
                    elapsed, single = timed_run(config, descriptions([feature]), root / name / str(feature))
                    seconds += elapsed
                    if single.results[feature].scores != pipeline.results[feature].scores:
                        raise RuntimeError(f"feature {feature}: the {name} run's scores differ from the pipeline's")
                runs[name] = seconds / len(few) * len(features)
    finally:
        server.kill()
        server.wait()

    print(f"{len(features)} features, rater latency {args.latency * 1000:.0f} ms, {requests} LLM requests "
          f"({requests / len(features):.1f} per feature), faithfulness computed for {computed_faithfulness}")  # fmt: skip
    print(f"pipeline (concurrency 64):           {pipeline_s:7.2f} s  ({pipeline_s / len(features):.2f} s per feature)")
    for name, seconds in runs.items():
        label = f"{name} (scaled from {len(few)} features):"
        print(f"{label:<37}{seconds:7.2f} s  -> pipeline is {seconds / pipeline_s:5.1f}x faster")
    print(
        f"target: pipeline >= 10x faster than sequential: {'met' if runs['sequential'] / pipeline_s >= 10 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
