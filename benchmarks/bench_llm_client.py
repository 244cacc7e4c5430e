"""LLMClient against the raw OpenAI SDK, same run: calls/s of FADE rating calls to a judge with no latency.

The loopback server (`harness llm serve --latency 0`'s server) runs in its own process and answers at once,
so what is timed is the client's own cost per call: the ceiling a fast served judge (vLLM, SGLang) leaves.
At each concurrency bound, alternated `--repeats` times, best of each, every mode sending the same requests
(each with its rating JSON schema as `response_format`, as the client sends it, so the server's work per call is
the same in all):
  sdk      openai.AsyncOpenAI.chat.completions.create under an asyncio.Semaphore, its connections open, the schema
           in `extra_body` (sent as it is, as the client sends it): the floor the target is measured against;
  sdk cold the same, its client made and its connections opened in the timed batch (what a client's first
           batch pays; complete_many's later batches reuse them, its loop living as long as the client);
  litellm  litellm.acompletion the same way (what LLMClient's litellm path sends through);
  client   LLMClient.complete_many with every feature on: response cache (empty: every call a miss, then
           written), answer validation, AnswerFormat counting, cost, usage ledger; on its default path for an
           `openai/` model with an api_base (the direct OpenAI-SDK path) and, for reference, forced through
           litellm (llm.transport: litellm).
Target: client >= 0.8 x sdk at concurrency 32 and 128 (best of the repeats each; and the median of each repeat's
ratio, its two runs seconds apart, which the machine's load swings move less). Also printed: the CPU seconds per
call of the bench process (all its threads; the server is another process), the client's own cost, which other
jobs on a shared machine move far less than the wall clock.

    python benchmarks/bench_llm_client.py [--calls 400] [--concurrency 32 128] [--repeats 3] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _loopback import start_loopback_process

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm import rating_conversation  # noqa: E402

from harness.config import LLMConfig  # noqa: E402
from harness.llm import AnswerFormat, LLMClient, ratings_format  # noqa: E402
from harness.llm.ledger import UsageLedger  # noqa: E402
from harness.llm.parsing import parse_ratings  # noqa: E402

KEY_ENV = "BENCH_LLM_LOOPBACK_KEY"
PER_CALL = 15


def sequence_ids(call: int) -> list[int]:
    return list(range(call * PER_CALL, (call + 1) * PER_CALL))


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process's threads (the server's are its own process's), since `start`."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def rating_schema(call: int) -> dict:
    """The `response_format` the client sends with `call`'s rating conversation."""
    return ratings_format("fade_rating", sequence_ids(call), (0, 1, 2))


async def raw_calls(send, conversations: list, concurrency: int) -> None:
    bound = asyncio.Semaphore(concurrency)

    async def one(call, messages):
        async with bound:
            response = await send(messages, rating_schema(call))
        if not response.choices[0].message.content.startswith("{"):
            raise RuntimeError("the loopback server gave an unexpected answer")

    await asyncio.gather(*map(one, range(len(conversations)), conversations))


def time_sdk(url: str, conversations: list, concurrency: int, warm: bool = True) -> tuple[float, float]:
    """Seconds of the calls through one AsyncOpenAI; not `warm`: its making and first connections timed too (what
    a client's first batch pays)."""
    import openai

    async def run() -> tuple[float, float]:
        start = clock()
        client = openai.AsyncOpenAI(base_url=url, api_key=os.environ[KEY_ENV], max_retries=0, timeout=60.0)

        async def send(messages, schema):
            return await client.chat.completions.create(
                model="scripted",
                messages=messages,
                temperature=0.0,
                max_tokens=1024,
                extra_body={"response_format": schema},
            )

        if warm:
            await raw_calls(send, conversations[:concurrency], concurrency)  # open the connections
            start = clock()
        await raw_calls(send, conversations, concurrency)
        elapsed = since(start)
        await client.close()
        return elapsed

    return asyncio.run(run())


def time_litellm(url: str, conversations: list, concurrency: int) -> tuple[float, float]:
    import litellm

    async def run() -> tuple[float, float]:
        async def send(messages, schema):
            return await litellm.acompletion(
                model="openai/scripted",
                messages=messages,
                response_format=schema,
                api_base=url,
                api_key=os.environ[KEY_ENV],
                temperature=0.0,
                max_tokens=1024,
                max_retries=0,
                timeout=60.0,
            )

        await raw_calls(send, conversations[:concurrency], concurrency)
        start = clock()
        await raw_calls(send, conversations, concurrency)
        return since(start)

    return asyncio.run(run())


def time_client(
    url: str, conversations: list, concurrency: int, folder: Path, transport: str, profile: cProfile.Profile | None
) -> tuple[float, float]:
    """Wall and CPU seconds of the timed batch; `profile` records it in complete_many's loop thread (cProfile sees one thread:
    it is switched there by a validator, which runs in that thread)."""
    config = LLMConfig(
        model="openai/scripted",
        api_base=url,
        api_key_env=KEY_ENV,
        concurrency=concurrency,
        cache_path=str(folder / f"cache-{time.monotonic_ns()}.sqlite"),  # empty: every call a miss
        input_cost_per_token=1e-7,
        output_cost_per_token=2e-7,
        transport=transport,
    )
    client = LLMClient(config, progress=False)
    client.ledger = UsageLedger(folder / f"ledger-{time.monotonic_ns()}.jsonl")
    formats = [
        AnswerFormat("fade_rating", rating_schema(call), lambda text: True) for call in range(len(conversations))
    ]
    validators = [
        (lambda text, ids=ids: parse_ratings(text, ids).ok) for ids in map(sequence_ids, range(len(conversations)))
    ]
    # open the connections, which the timed batch reuses (complete_many's loop lives as long as the client)
    client.complete_many([rating_conversation(-1 - call) for call in range(concurrency)])
    switch = [rating_conversation(-1 - concurrency)]
    if profile is not None:
        client.complete_many(switch, validate=lambda text: profile.enable() or True)
    calls_before = client.usage.calls
    start = clock()
    results = client.complete_many(conversations, return_exceptions=False, validate=validators, answer_format=formats)
    elapsed = since(start)
    calls = client.usage.calls - calls_before
    if profile is not None:
        client.complete_many(switch, validate=lambda text: profile.disable() or True)  # a cache hit: validated
    if not all(result.valid and not result.cached for result in results) or calls != len(conversations):
        raise RuntimeError(f"the client did not make one valid call per conversation: {client.usage}")
    client.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of the client's direct-path runs to this file")
    args = parser.parse_args()

    os.environ.setdefault(KEY_ENV, "bench-not-a-secret")
    server, url = start_loopback_process(
        "from harness.testing.loopback import serve; serve('127.0.0.1', 0, 'fade', latency_s=0.0)"
    )
    conversations = [rating_conversation(call) for call in range(args.calls)]
    modes = ("sdk", "sdk cold", "litellm", "client", "client via litellm")
    best: dict[tuple[str, int], float] = {}
    timings: dict[tuple[str, int], list[tuple[float, float]]] = {}
    profile = cProfile.Profile() if args.profile else None
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            for _ in range(args.repeats):
                for bound in args.concurrency:
                    for mode in modes:
                        if mode.startswith("sdk"):
                            elapsed = time_sdk(url, conversations, bound, warm=mode == "sdk")
                        elif mode == "litellm":
                            elapsed = time_litellm(url, conversations, bound)
                        else:
                            transport = "litellm" if mode.endswith("litellm") else "auto"
                            profiled = profile if transport == "auto" else None
                            elapsed = time_client(url, conversations, bound, folder, transport, profiled)
                        best[mode, bound] = min(best.get((mode, bound), float("inf")), elapsed[0])
                        timings.setdefault((mode, bound), []).append(elapsed)
    finally:
        server.kill()
        server.wait()
    if profile is not None:
        profile.dump_stats(args.profile)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.calls} rating calls, "
        f"loopback server with no latency in its own process; best of {args.repeats}"
    )
    for bound in args.concurrency:
        sdk = args.calls / best["sdk", bound]
        line = f"concurrency {bound}: sdk {sdk:.0f} calls/s"
        for mode in modes[1:]:
            rate = args.calls / best[mode, bound]
            line += f" | {mode} {rate:.0f} calls/s = {rate / sdk:.2f}x"
        print(
            line
            + f" (target client >= 0.80x: {'met' if args.calls / best['client', bound] >= 0.8 * sdk else 'NOT met'})"
        )
        # The same repeat's sdk and client runs are seconds apart: their ratio shrugs off the load's swings.
        paired = [sdk[0] / client[0] for sdk, client in zip(timings["sdk", bound], timings["client", bound])]
        listed = ", ".join(f"{ratio:.2f}" for ratio in paired)
        print(f"  client / sdk in each repeat: {listed}; median {statistics.median(paired):.2f}x")
        # CPU per call, which other jobs on the machine move far less than the wall clock: the client's own cost.
        cpu_ms = {mode: statistics.median(cpu for _, cpu in timings[mode, bound]) * 1000 / args.calls for mode in modes}
        listed = " | ".join(f"{mode} {cpu_ms[mode]:.2f}" for mode in modes)
        cpu_paired = [sdk[1] / client[1] for sdk, client in zip(timings["sdk", bound], timings["client", bound])]
        print(
            f"  CPU ms per call (median; this process, every thread): {listed}; "
            f"sdk / client CPU in each repeat: median {statistics.median(cpu_paired):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
