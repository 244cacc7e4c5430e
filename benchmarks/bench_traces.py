"""Cost of recording LLM calls as MLflow traces (tracking.traces): tracing on vs off in the same run.

N FADE rating calls (15 sequences each) through LLMClient -> real litellm -> the loopback server (its own
process, a fixed latency per request), into a real sqlite MLflow store, alternated off / on:
  answered  every call sent to the server (empty response cache);
  cached    the same calls again, every answer from the response cache (the cheapest call: the trace's
            own cost shows most here).
Wall time includes flushing MLflow's background trace writer (what a run's end waits for). The store's size
grows by the traces' bytes (sqlite file plus WAL).

    python benchmarks/bench_traces.py [--calls 500] [--concurrency 32] [--latency 0.05] [--repeats 2]
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

from harness.config import LLMConfig  # noqa: E402
from harness.llm import LLMClient  # noqa: E402
from harness.llm.tracing import CallTracer  # noqa: E402
from harness.track.store import default_tracking_uri, ensure_experiment  # noqa: E402


def store_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("mlflow.db*"))


def one_pass(url: str, folder: Path, conversations: list, concurrency: int, tracer: CallTracer | None) -> tuple[float, float]:
    """Wall seconds of the calls answered by the server, then of the same calls from the cache."""
    import mlflow

    config = LLMConfig(model="openai/scripted", api_base=url, concurrency=concurrency,
                       cache_path=str(folder / f"cache-{time.monotonic_ns()}.sqlite"))
    client = LLMClient(config, progress=False)
    client.tracer = tracer
    timings = []
    for _ in ("answered", "cached"):
        start = time.perf_counter()
        client.complete_many(conversations, return_exceptions=False,
                             trace_context=[{"feature": index % 16} for index in range(len(conversations))])
        mlflow.flush_trace_async_logging()
        timings.append(time.perf_counter() - start)
    client.close()
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import mlflow

    process, url = start_loopback_process(
        f"from harness.llm.loopback import serve; serve('127.0.0.1', 0, 'fade', latency_s={args.latency})"
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
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            grown = []
            for _ in range(args.repeats):
                for mode in ("off", "on"):
                    before = store_bytes(folder)
                    tracer = CallTracer(run_id, experiment_id, "fade") if mode == "on" else None
                    results[mode].append(one_pass(url, folder, conversations, args.concurrency, tracer))
                    if mode == "on":
                        grown.append(store_bytes(folder) - before)
            traces = len(mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list",
                                              include_spans=False))
    finally:
        process.kill()
        process.wait()
    best = {mode: (min(t[0] for t in runs), min(t[1] for t in runs)) for mode, runs in results.items()}
    calls = 2 * args.calls  # answered + cached, per pass
    print(f"load avg (1 min) {os.getloadavg()[0]:.2f}; {args.calls} calls, concurrency {args.concurrency}, "
          f"latency {args.latency * 1000:.0f} ms; best of {args.repeats}")
    for index, kind in enumerate(("answered", "cached")):
        off, on = best["off"][index], best["on"][index]
        print(f"  {kind:9s} off {off:7.3f} s  on {on:7.3f} s  ratio {on / off:5.2f}x  "
              f"(+{(on - off) / args.calls * 1000:.2f} ms per call)")
    per_trace = sum(grown) / len(grown) / calls
    print(f"  store growth {sum(grown) / len(grown) / 1e6:.2f} MB per {calls} traces = {per_trace / 1000:.1f} kB per trace "
          f"({traces} traces in the run)")


if __name__ == "__main__":
    main()
