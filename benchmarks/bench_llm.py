"""LLM layer throughput: 1,000 FADE rating calls through litellm against the loopback server.

The server runs in its own process (as a real backend would) and answers every request after a fixed
latency (100 ms by default). Three timings in one run:
  sequential  a few calls one after another (concurrency 1, no cache); per-call time x 1,000 is the
              sequential baseline (extrapolated, not run in full: it would take ~2 minutes);
  concurrent  all calls under the concurrency bound, cache empty;
  cached      the same calls again: every answer from the cache, zero requests.
Target: concurrent speed-up >= 0.8 x the concurrency bound.

    python benchmarks/bench_llm.py [--calls 1000] [--concurrency 32] [--latency 0.1] [--sequential-calls 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _loopback import start_loopback_process

from harness.config import LLMConfig
from harness.llm import LLMClient
from harness.testing.responders import RATING_MARKER

KEY_ENV = "BENCH_LLM_LOOPBACK_KEY"
SYSTEM = f"You will review a dataset of varying sequences and {RATING_MARKER}. Answer a Python dict."
WORDS = ["cat", "dog", "tree", "car", "house"]


def rating_conversation(call: int, per_call: int = 15) -> list[dict[str, str]]:
    ids = range(call * per_call, (call + 1) * per_call)
    lines = "\n".join(f"Sequence ID {k}: 'my {WORDS[k % len(WORDS)]} number {k}'" for k in ids)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f'Concept: the word "cat"\n{lines}'}]


def start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    code = f"from harness.testing.loopback import serve; serve('127.0.0.1', 0, 'fade', latency_s={latency_s})"
    return start_loopback_process(code)


def timed(client: LLMClient, conversations: list) -> tuple[float, float]:
    """Wall and CPU seconds of one batch (CPU: this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    results = client.complete_many(conversations, return_exceptions=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not all(result.text.startswith("{") for result in results):
        raise RuntimeError("the loopback server gave an unexpected answer")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 32], help="one or more bounds")
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--sequential-calls", type=int, default=20, help="calls timed for the sequential baseline")
    args = parser.parse_args()

    os.environ.setdefault(KEY_ENV, "bench-not-a-secret")
    server, url = start_server(args.latency)
    concurrent: dict[int, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as cache_root:

            def client(concurrency: int, cache_dir: str | None) -> LLMClient:
                config = LLMConfig(
                    model="openai/scripted",
                    api_base=url,
                    api_key_env=KEY_ENV,
                    concurrency=concurrency,
                    cache=cache_dir is not None,
                    input_cost_per_token=0.0,
                    output_cost_per_token=0.0,
                )
                return LLMClient(config, cache_dir or cache_root, progress=False)

            conversations = [rating_conversation(call) for call in range(args.calls)]
            sequential = client(1, cache_dir=None)
            timed(sequential, [rating_conversation(-1)])  # warm-up: connection pool, litellm's lazy imports
            sequential_s, _ = timed(sequential, conversations[: args.sequential_calls])
            per_call_s = sequential_s / args.sequential_calls
            baseline_s = per_call_s * args.calls

            for bound in args.concurrency:
                cache_dir = os.path.join(cache_root, f"c{bound}")  # empty cache: every call goes to the server
                concurrent[bound] = timed(client(bound, cache_dir), conversations)
            rerun = client(args.concurrency[-1], cache_dir)
            cached_s, _ = timed(rerun, conversations)
            if rerun.usage.calls != 0 or rerun.usage.cache_hits != args.calls:
                raise RuntimeError(f"the cached re-run was not served from the cache: {rerun.usage}")
    finally:
        server.kill()
        server.wait()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"server latency {args.latency * 1000:.0f} ms (separate process), {args.calls} rating calls through litellm")
    print(
        f"sequential: {args.sequential_calls} calls in {sequential_s:.2f} s = {per_call_s * 1000:.1f} ms/call; "
        f"extrapolated to {args.calls} calls: {baseline_s:.1f} s"
    )
    for bound, (wall_s, cpu_s) in concurrent.items():
        speedup, target = baseline_s / wall_s, 0.8 * bound
        print(
            f"concurrency {bound}: {wall_s:.2f} s = {args.calls / wall_s:.0f} calls/s, "
            f"client CPU {cpu_s / args.calls * 1000:.1f} ms/call; speed-up {speedup:.1f}x "
            f"(target >= {target:.1f}x = 0.8 x {bound}: {'met' if speedup >= target else 'NOT met'})"
        )
    last_wall_s = concurrent[args.concurrency[-1]][0]
    print(
        f"cached re-run: {cached_s:.3f} s, 0 requests; {last_wall_s / cached_s:.0f}x faster than the first run, "
        f"{baseline_s / cached_s:.0f}x faster than sequential"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
