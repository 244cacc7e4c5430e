"""What each scorer costs per feature, and how much the one-concurrent-batch design saves.

Records come from the real pipeline: SmolLM2-135M, MLP neurons of model.layers.15 (the default site),
python-docs samples, extract_activations + pool_examples. The LLM scorers ask the loopback server's
scripted keyword rater (the `fade` responder) in its own process, answering after a fixed latency (100 ms
by default), as a remote backend would. Per scorer, in one run:
  sequential  the first features' calls one after another (concurrency 1, no cache); per-call time x all
              calls is the baseline (extrapolated, not run in full)
  scorer      the scorer on every feature (one concurrent batch under the bound, empty cache)
  cached      the same again on the same cache file: every answer from the cache
The embedding scorer's baseline is the same scorer with batch_size 1.

    python benchmarks/bench_scorers.py [--features 32] [--samples 200] [--latency 0.1] [--concurrency 16]
                                       [--sequential-features 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _loopback import start_loopback_process

from harness.activations import extract_activations, pool_examples
from harness.config import LLMConfig, ScorersConfig, parse_config
from harness.corpus import load_corpus
from harness.evaluate.scorers import SCORERS, least_active_needed
from harness.explain import build_feature_records
from harness.llm import LLMClient
from harness.model import load_encoder, load_subject_model
from harness.sites import build_site

LLM_SCORERS = ("detection", "fuzzing", "simulation")


def start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    code = (
        "from harness.testing.loopback import FaultPlan, LoopbackServer\n"
        "from harness.testing.responders import FadeResponder\n"
        f"server = LoopbackServer(FadeResponder(), FaultPlan(latency_s={latency_s}))\n"
        "print(server.url, flush=True)\n"
        "server.serve_forever()\n"
    )
    return start_loopback_process(code)


def real_records(num_features: int, num_samples: int, config: ScorersConfig, cache_dir: str):
    harness_config = parse_config(
        {
            "corpus": {"num_samples": num_samples},
            "site": {"features": {"start": 0, "stop": num_features}},
            "activations": {"max_length": 64, "cache_dir": cache_dir},
        }
    )
    loaded = load_subject_model(harness_config.model)
    corpus = load_corpus(harness_config.corpus, loaded.tokenizer)
    site = build_site(harness_config.site, loaded)
    activation_set = extract_activations(loaded, site, corpus, harness_config.activations, progress=False)
    pools = pool_examples(
        loaded.tokenizer, corpus, activation_set, harness_config.activations, num_low=least_active_needed(config)
    )
    return build_feature_records(activation_set, pools)


def top_token_descriptions(records) -> dict[int, str]:
    """Each feature described by its strongest token, as a top-tokens explainer would."""
    descriptions = {}
    for record in records:
        if record.top_examples:
            best = record.top_examples[0]
            descriptions[record.feature] = f"the word '{best.tokens[best.max_position].strip()}'"
    return descriptions


def time_llm_scorer(name: str, records, descriptions, config: ScorersConfig, url: str, folder: str, args) -> str:
    """One table row: calls and tokens per feature, sequential baseline, concurrent run, cached rerun."""
    scorer = SCORERS.get(name)()
    llm = {"model": "openai/scripted", "api_base": url, "timeout_s": 60.0}
    sequential = LLMClient(LLMConfig(**llm, concurrency=1, cache=False), progress=False)
    few = records[: args.sequential_features]
    start = time.perf_counter()
    scorer.score(few, {r.feature: descriptions[r.feature] for r in few}, sequential, config, progress=False)
    per_call = (time.perf_counter() - start) / max(sequential.usage.requests, 1)
    cache_path = os.path.join(folder, f"{name}.sqlite")
    client = LLMClient(LLMConfig(**llm, concurrency=args.concurrency, cache_path=cache_path), progress=False)
    start = time.perf_counter()
    scorer.score(records, descriptions, client, config, progress=False)
    first = time.perf_counter() - start
    usage = client.usage
    start = time.perf_counter()
    scorer.score(records, descriptions, client, config, progress=False)
    cached = time.perf_counter() - start
    if client.usage.cache_hits != usage.requests:
        raise RuntimeError(f"{name}: the rerun was not all cache hits ({client.usage})")
    for used in (sequential, client):
        used.close()
    calls, features = usage.requests, len(records)
    return (
        f"| {name} | {calls / features:.1f} | {usage.prompt_tokens / features:.0f} "
        f"| {per_call * 1000:.0f} ms → {per_call * calls:.1f} s | {first:.2f} s "
        f"| **{per_call * calls / first:.1f}x** | {cached:.2f} s | {first / cached:.0f}x |"
    )


def time_embedding(records, descriptions, config: ScorersConfig) -> str:
    """Model load, then the scorer with batch_size 1 (baseline) and with the configured batch size."""
    scorer = SCORERS.get("embedding")()
    start = time.perf_counter()
    load_encoder(config.embedding.model, config.embedding.device)
    load_s = time.perf_counter() - start
    timings = {}
    for batch_size in (1, config.embedding.batch_size):
        section = config.embedding.model_copy(update={"batch_size": batch_size})
        start = time.perf_counter()
        scorer.score(records, descriptions, None, config.model_copy(update={"embedding": section}), progress=False)
        timings[batch_size] = time.perf_counter() - start
    batched = timings[config.embedding.batch_size]
    return (
        f"embedding: model load {load_s:.2f} s; batch 1 {timings[1]:.2f} s; batch {config.embedding.batch_size} "
        f"{batched:.2f} s (**{timings[1] / batched:.1f}x**, {1000 * batched / len(records):.0f} ms/feature)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential-features", type=int, default=2)
    args = parser.parse_args()

    config = ScorersConfig(enabled=[*LLM_SCORERS, "embedding"])
    with tempfile.TemporaryDirectory() as folder:
        records = real_records(args.features, args.samples, config, os.path.join(folder, "cache"))
        descriptions = top_token_descriptions(records)
        print(
            f"{len(records)} neuron features of model.layers.15.mlp.act_fn, {args.samples} python-docs samples; "
            f"load average {os.getloadavg()[0]:.2f}; rater latency {args.latency * 1000:.0f} ms, "
            f"concurrency {args.concurrency}\n"
        )
        columns = ["scorer", "calls/feature", "prompt tokens/feature", "sequential (extrapolated)", "scorer",
                   "speed-up", "cached", "cached vs first"]  # fmt: skip
        print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
        process, url = start_server(args.latency)
        try:
            for name in LLM_SCORERS:
                print(time_llm_scorer(name, records, descriptions, config, url, folder, args))
        finally:
            process.terminate()
            process.wait()
        print("\n" + time_embedding(records, descriptions, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
