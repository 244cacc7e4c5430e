"""`harness run` under `accelerate launch`: the main process leads (it tracks), the others follow.

Only the main process opens MLflow runs, writes the descriptions, runs the other scorers and logs. Every
process computes the activation pass and FADE on its share of the features (the stages' own split, as
`harness evaluate` does), into the variant's one work folder, so a killed run resumes per feature. The
followers learn what the main process decided at two points of each variant, in order: whether the variant
runs (a finished one is skipped) with its run id, and the descriptions to evaluate. A failure of the main
process's own is sent where the followers wait, so none waits for a process that has stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.stages._pipeline import run_ledger, run_variant, variant_workdir

if TYPE_CHECKING:
    import pandas as pd

    from harness.activations import Processes
    from harness.config import HarnessConfig


@dataclass(frozen=True)
class _Failed:
    """What a follower receives instead of the next step when the main process failed."""

    message: str


class Lead:
    """The main process's side: `start` and `describe` tell the followers each variant's two decisions;
    `fail` tells them of a failure where they wait. With one process (`processes` None or of one) all of it
    does nothing. A team (harness.stages._pipeline.Team) for `run_variant`."""

    leads = True

    def __init__(self, processes: Processes | None = None, variants: int = 1) -> None:
        self._processes = processes
        self._followers = processes is not None and processes.num_processes > 1
        self._variants_left = variants
        self._waiting = self._followers  # the followers wait for the first variant's start
        self._together = False

    def start(self, skipped: bool, run_id: str) -> None:
        """The variant runs (or is skipped), as MLflow run `run_id`."""
        self._send((skipped, run_id))
        self._variants_left -= 1
        self._waiting = self._followers and (not skipped or self._variants_left > 0)

    def describe(self, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The descriptions every process evaluates: computed here, sent to the followers."""
        table = compute()
        self._send(table)
        self._waiting = self._followers and self._variants_left > 0
        return table

    @contextmanager
    def together(self) -> Iterator[None]:
        """A stage every process runs, whose failures reach every process by themselves (FADE's)."""
        self._together = True
        try:
            yield
        finally:
            self._together = False

    def fail(self, error: BaseException) -> None:
        """Tell the followers the run stopped, where they wait for the main process."""
        if self._waiting and not self._together:
            self._send(_Failed(f"{type(error).__name__}: {error}"))
            self._waiting = False

    def _send(self, value: Any) -> None:
        if self._followers and self._processes is not None:
            self._processes.gather(value)


def _receive(processes: Processes) -> Any:
    value = processes.gather(None)[0]
    if isinstance(value, _Failed):
        raise HarnessError(f"the main process of this accelerate launch stopped ({value.message}); so does this one")
    return value


class Follower:
    """A follower's side of a variant (a Team for `run_variant`): the lead's descriptions, FADE on this
    process's share of the features; no scorers, no metrics."""

    leads = False

    def __init__(self, processes: Processes) -> None:
        self._processes = processes

    def describe(self, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        return _receive(self._processes)

    def together(self) -> AbstractContextManager[None]:
        return nullcontext()


def follow_variants(config: HarnessConfig, processes: Processes) -> None:
    """A follower's part of `harness run`: each variant the main process runs, through the one pipeline."""
    from harness.config import expand_variants, result_fingerprint
    from harness.stages._shared import SharedStages

    shared = SharedStages(progress=False)
    team = Follower(processes)
    for _, variant in expand_variants(config):
        skipped, run_id = _receive(processes)
        if skipped:
            continue
        key = result_fingerprint(variant)
        run_variant(variant, key, shared, run_ledger(variant_workdir(variant, key), run_id), team=team)
