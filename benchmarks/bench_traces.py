"""Cost of recording LLM calls as MLflow traces (tracking.traces): tracing off, a trace per call, and a trace
per feature (what a tracked run does: each call a span of its feature's trace) in the same run.

N FADE rating calls (15 sequences each, about 16 features) through LLMClient -> real litellm -> the loopback
server (its own process, a fixed latency per request), into a real sqlite MLflow store, alternated
off / per-call / per-feature:
  answered  every call sent to the server (empty response cache);
  cached    the same calls again, every answer from the response cache (the cheapest call: the trace's
            own cost shows most here).
Wall time includes flushing MLflow's background trace writer (what a run's end waits for). The store's size
grows by the traces' bytes (sqlite file plus WAL).

Then the store's bytes per feature (--features, 0 to skip): FADE-shaped calls (per feature 5 generation and 15
rating calls with FADE's own prompts and JSON schemas, every answer from the server, 1% of requests answered 500
once) traced into a fresh store, every call of every feature (trace_sample first_features = all) against the
defaults (tracking.trace_sample); the traces kept are checked: the sampled features', plus a trace for each
feature with a retried call.

    python benchmarks/bench_traces.py [--calls 500] [--concurrency 32] [--latency 0.05] [--repeats 2]
                                      [--features 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _loopback import start_loopback_process

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm import rating_conversation  # noqa: E402

from harness.config import LLMConfig, TraceSampleConfig  # noqa: E402
from harness.evaluate.fade.prompts import generation_messages, rating_messages  # noqa: E402
from harness.evaluate.fade.rating import rating_answer  # noqa: E402
from harness.llm import AnswerFormat, LLMClient, string_list_format  # noqa: E402
from harness.llm.tracing import FEATURE_TAG, CallTracer  # noqa: E402
from harness.testing.loopback import FaultPlan, LoopbackServer  # noqa: E402
from harness.track.store import default_tracking_uri, ensure_experiment  # noqa: E402


def store_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("mlflow.db*"))


def one_pass(
    url: str, folder: Path, conversations: list, concurrency: int, tracer: CallTracer | None, grouped: bool = True
) -> tuple[float, float]:
    """Wall seconds of the calls answered by the server, then of the same calls from the cache."""
    import mlflow

    config = LLMConfig(
        model="openai/scripted",
        api_base=url,
        concurrency=concurrency,
        cache_path=str(folder / f"cache-{time.monotonic_ns()}.sqlite"),
    )
    client = LLMClient(config, progress=False)
    client.tracer = tracer
    timings = []
    for _ in ("answered", "cached"):
        start = time.perf_counter()
        # a call about no feature is a trace of its own; calls about a feature are spans of its trace
        contexts = [{"feature": index % 16} if grouped else {"call": index} for index in range(len(conversations))]
        client.complete_many(conversations, return_exceptions=False, trace_context=contexts)
        mlflow.flush_trace_async_logging()
        timings.append(time.perf_counter() - start)
    client.close()
    return timings[0], timings[1]


def fade_calls(feature: int) -> list[tuple[list[dict[str, str]], AnswerFormat]]:
    """One feature's FADE-shaped calls: 5 generation calls, 15 rating calls of 15 sequences."""
    concept = f"mentions the word number {feature}"
    generation = AnswerFormat("fade_generation", string_list_format("fade_generation"), lambda text: True)
    calls = [(generation_messages(f"{concept} ({index})", in_json_object=True), generation) for index in range(5)]
    for batch in range(15):
        ids = list(range(batch * 15, (batch + 1) * 15))
        sequences = [(k, f"my {WORDS[k % len(WORDS)]} number {k} of feature {feature}") for k in ids]
        calls.append((rating_messages(concept, sequences), rating_answer(ids)))
    return calls


WORDS = ["cat", "dog", "tree", "car", "house"]


def store_per_feature(features: int, concurrency: int, sample: TraceSampleConfig) -> tuple[float, int, set[int]]:
    """Bytes per feature a run's traces add to a fresh store, the calls answered, and the features traced."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch, LoopbackServer() as server:
        folder = Path(scratch)
        server.faults = FaultPlan(rate=0.01, kinds=("server_error",), seed=4)
        uri = default_tracking_uri(folder / "mlruns")
        experiment_id = ensure_experiment("bench-trace-store", uri)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            run_id = run.info.run_id
        before = store_bytes(folder)
        config = LLMConfig(
            model="openai/scripted",
            api_base=server.url,
            concurrency=concurrency,
            backoff_base_s=0.001,
            cache_path=str(folder / "cache.sqlite"),
        )
        client = LLMClient(config, progress=False)
        client.tracer = CallTracer(run_id, experiment_id, "fade", sample)
        calls = [(feature, call) for feature in range(features) for call in fade_calls(feature)]
        results = client.complete_many(
            [messages for _, (messages, _) in calls],
            answer_format=[answer for _, (_, answer) in calls],
            trace_context=[{"feature": feature, "purpose": "clarity"} for feature, _ in calls],
        )
        client.close()
        mlflow.flush_trace_async_logging()
        grown = store_bytes(folder) - before
        traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list", max_results=10**6)
        traced = {int(trace.info.tags[FEATURE_TAG]) for trace in traces}
        retried = {feature for (feature, _), result in zip(calls, results) if result.attempts > 1}
        tracer = CallTracer(run_id, experiment_id, "check", sample)
        expected = {feature for feature in range(features) if tracer.keeps_all_calls(feature)} | retried
        if traced != expected:
            raise RuntimeError(f"traced features {sorted(traced ^ expected)} differ from the sample")
        mlflow.set_tracking_uri(None)
        return grown / features, len(calls), traced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--features", type=int, default=200, help="features of the store-size runs; 0 skips them")
    args = parser.parse_args()

    import mlflow

    process, url = start_loopback_process(
        f"from harness.testing.loopback import serve; serve('127.0.0.1', 0, 'fade', latency_s={args.latency})"
    )
    conversations = [rating_conversation(call) for call in range(args.calls)]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            uri = default_tracking_uri(folder / "mlruns")
            experiment_id = ensure_experiment("bench-traces", uri)
            with mlflow.start_run(experiment_id=experiment_id) as run:
                run_id = run.info.run_id
            one_pass(url, folder, conversations[:20], args.concurrency, CallTracer(run_id, experiment_id, "warm-up"))
            modes = ("off", "per-call", "per-feature")
            results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
            grown: dict[str, list[int]] = {mode: [] for mode in modes[1:]}
            for _ in range(args.repeats):
                for mode in modes:
                    before = store_bytes(folder)
                    tracer = CallTracer(run_id, experiment_id, "fade") if mode != "off" else None
                    grouped = mode == "per-feature"
                    results[mode].append(one_pass(url, folder, conversations, args.concurrency, tracer, grouped))
                    if mode != "off":
                        grown[mode].append(store_bytes(folder) - before)
    finally:
        process.kill()
        process.wait()
    best = {mode: (min(t[0] for t in runs), min(t[1] for t in runs)) for mode, runs in results.items()}
    calls = 2 * args.calls  # answered + cached, per pass
    print(
        f"load avg (1 min) {os.getloadavg()[0]:.2f}; {args.calls} calls, concurrency {args.concurrency}, "
        f"latency {args.latency * 1000:.0f} ms; best of {args.repeats}"
    )
    for index, kind in enumerate(("answered", "cached")):
        off = best["off"][index]
        line = f"  {kind:9s} off {off:7.3f} s"
        for mode in modes[1:]:
            on = best[mode][index]
            line += f" | {mode} {on:7.3f} s {on / off:5.2f}x (+{(on - off) / args.calls * 1000:.2f} ms per call)"
        print(line)
    for mode, sizes in grown.items():
        print(f"  store growth, {mode}: {sum(sizes) / len(sizes) / calls / 1000:.1f} kB per call")
    if args.features:
        print(f"store per feature, {args.features} features x 20 FADE-shaped calls, 1% of requests answered 500 once:")
        for label, sample in (
            ("every call", TraceSampleConfig(first_features=args.features, share=1.0)),
            ("defaults", TraceSampleConfig()),
        ):
            per_feature, answered, traced = store_per_feature(args.features, args.concurrency, sample)
            print(
                f"  {label:10s} {per_feature / 1000:7.1f} kB per feature ({answered} calls; "
                f"{len(traced)} of {args.features} features traced)"
            )


if __name__ == "__main__":
    main()
