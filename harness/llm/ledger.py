"""A durable record of what LLM clients spent, so a killed process's calls still count when its run resumes.

What a client's call counted (a request, a call sent, its tokens and cost, a cache hit, a parsed answer) is
appended as one JSON line tagged with the stage when the call ends; a run's usage is the sum of its ledger,
over every process that worked on it. A line cut short by a kill is skipped when read (it is at most one
call's counts).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from harness.llm.types import Usage

# Usage's scalar counts (its per-kind dicts, answers and parsed, are read by name).
_COUNT_FIELDS = frozenset(item.name for item in fields(Usage) if item.name not in ("answers", "parsed"))


class UsageLedger:
    """An append-only JSON-lines file of usage counts; `stage(name)` gives a view that tags its lines."""

    def __init__(self, path: str | Path, stage: str = "") -> None:
        self.path = Path(path)
        self.stage_name = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> UsageLedger:
        """The same file, each line it writes tagged `name`."""
        return UsageLedger(self.path, name)

    def record(self, counts: dict[str, int | float], answers: dict[str, dict[str, int]] | None = None) -> None:
        """Append one line: scalar counts (Usage's fields) and optionally per-kind answer counts."""
        entry = {"stage": self.stage_name, **counts, **(answers or {})}
        # Each line starts with its newline, so a line cut short by a kill never runs into the next one.
        line = ("\n" + json.dumps(entry, separators=(",", ":"))).encode()
        # O_APPEND: each small write lands whole at the end, whichever thread or process writes it.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)

    def by_stage(self) -> dict[str, Usage]:
        """The summed usage of each stage's lines (one read of the file)."""
        usage: dict[str, Usage] = {}
        if not self.path.exists():
            return usage
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed process, cut short
            if not isinstance(entry, dict):
                continue
            stage = str(entry.get("stage", ""))
            usage[stage] = usage.get(stage, Usage()) + Usage(
                **{name: value for name, value in entry.items() if name in _COUNT_FIELDS},
                answers=dict(entry.get("answers") or {}),
                parsed=dict(entry.get("parsed") or {}),
            )
        return usage

    def total(self, *stages: str) -> Usage:
        """The summed usage of the lines tagged with one of `stages` (every line when none is given)."""
        return sum((usage for stage, usage in self.by_stage().items() if not stages or stage in stages), Usage())
