"""UsageLedger: what clients spent survives the process, sums over processes, and reads back by stage."""

from __future__ import annotations

import asyncio
import json

from harness.llm import AnswerFormat, LLMClient, Usage, UsageLedger


def _ask_all(client: LLMClient, texts: list[str], answer_format: AnswerFormat | None = None) -> None:
    async def run() -> None:
        await asyncio.gather(
            *(client.acomplete([{"role": "user", "content": text}], answer_format=answer_format) for text in texts)
        )

    asyncio.run(run())


def test_the_ledger_totals_what_the_client_counted(server, make_config, tmp_path):
    ledger = UsageLedger(tmp_path / "usage.jsonl")
    client = LLMClient(make_config(concurrency=4), progress=False)
    client.ledger = ledger.stage("fade")
    answers = AnswerFormat("explainer", {"type": "json_schema"}, parses=lambda text: text.startswith("a"))
    _ask_all(client, [f"question {k}" for k in range(12)], answers)
    _ask_all(client, [f"question {k}" for k in range(6)], answers)  # answered from the cache
    counted = client.usage
    assert counted.calls == 12 and counted.cache_hits == 6 and counted.prompt_tokens > 0
    assert ledger.total() == counted
    assert ledger.total("fade") == counted and ledger.total("explain") == Usage()
    # one line per call (its request, sending, tokens, cost and answer together), not one per count
    assert len(ledger.path.read_text().split()) == 18


def test_a_second_process_adds_to_what_the_first_spent(server, make_config, tmp_path):
    path = tmp_path / "usage.jsonl"
    first = LLMClient(make_config(), progress=False)
    first.ledger = UsageLedger(path, "explain")
    _ask_all(first, ["one", "two", "three"])
    # The next process: a new client (its memory starts empty) on a warm cache, with two new questions.
    second = LLMClient(make_config(), progress=False)
    second.ledger = UsageLedger(path, "fade")
    _ask_all(second, ["one", "two", "three", "four", "five"])
    total = UsageLedger(path).total()
    assert second.usage.calls == 2 and second.usage.cache_hits == 3
    assert total.calls == 5 and total.requests == 8
    assert total.prompt_tokens == first.usage.prompt_tokens + second.usage.prompt_tokens
    assert UsageLedger(path).total("explain") == first.usage


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.jsonl", "fade")
    ledger.record({"calls": 1, "prompt_tokens": 10, "cost_usd": 0.5})
    ledger.record({}, {"answers": {"rating": 1}, "parsed": {"rating": 0}})
    with ledger.path.open("a") as handle:
        handle.write("\n" + json.dumps({"stage": "fade", "calls": 1})[:9])  # the kill lands mid-write
    ledger.record({"calls": 1})  # the resumed process goes on writing
    expected = Usage(calls=2, prompt_tokens=10, cost_usd=0.5, answers={"rating": 1}, parsed={"rating": 0})
    assert ledger.total() == expected
