"""One MLflow run per pipeline variant, found again by the variant's settings hash.

A variant's run carries the tag `harness.variant_key`. Re-running the same variant finds it: a finished
run is skipped (unless forced), an unfinished one (killed, crashed, interrupted) is resumed into the same
run id, so an interrupted `harness run` leaves no duplicate or orphaned runs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from harness.artifacts import ERROR_FILE
from harness.errors import HarnessError, Terminated
from harness.files import file_lock, identity_hash
from harness.secrets import redact, redact_text
from harness.track.claims import claimed
from harness.track.store import lock_folder, store_lock

if TYPE_CHECKING:
    import pandas as pd

VARIANT_KEY_TAG = "harness.variant_key"
ROLE_TAG = "harness.role"
ERROR_TAG = "harness.error"  # why a run failed (its first MAX_ERROR_TAG_LENGTH characters)
# On a run finished with --keep-going although some features' LLM calls failed: which, and why. Such a run is
# not done: the next run of its key resumes it and computes those features again.
PARTIAL_TAG = "harness.partial"
MAX_PARAM_LENGTH = 6000
MAX_ERROR_TAG_LENGTH = 500
STORE_WRITE_ATTEMPTS = 3  # another machine may write the same row at the same moment (tolerant_write)
T = TypeVar("T")


@dataclass(frozen=True)
class TrackedRun:
    """The run a variant is written to, and how it was obtained."""

    run_id: str
    resumed: bool
    skipped: bool


def is_complete(run) -> bool:
    """Whether a run is done: FINISHED, and not partial (PARTIAL_TAG)."""
    return run.info.status == "FINISHED" and PARTIAL_TAG not in run.data.tags


def find_variant_run(experiment_id: str, variant_key: str, parent_run_id: str | None = None):
    """The best existing run of a variant: the newest complete one, else the newest other one."""
    from mlflow import MlflowClient

    query = f"tags.`{VARIANT_KEY_TAG}` = '{variant_key}'"
    if parent_run_id:
        query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    runs = MlflowClient().search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])
    complete = [run for run in runs if is_complete(run)]
    return (complete or runs or [None])[0]


@contextmanager
def variant_run(
    experiment_id: str,
    variant_key: str,
    run_name: str,
    *,
    role: str = "variant",
    parent_run_id: str | None = None,
    force: bool = False,
    check: Callable[[], None] | None = None,
) -> Iterator[TrackedRun]:
    """Open the variant's run (new, resumed, or skipped when already complete) as the active MLflow run.

    On a normal exit the run is marked FINISHED; on an exception FAILED (KILLED for Ctrl-C or SIGTERM) with
    the reason (record_failure), and the next call with the same key resumes it. A run finished partial
    (PARTIAL_TAG) is resumed too.

    One run per key, whatever runs at once: the look-up, the creation and the whole run happen under the
    key's run lock (variant_lock, this machine's processes) and its claim in the store (claims.claimed, every
    machine's), so a second process with the same variant, on any machine, waits for the first and then finds
    its run finished (skipped) or unfinished (resumed), and never opens a second run.

    Args:
        experiment_id: where the run lives.
        variant_key: hash of every setting that changes the variant's results.
        run_name: human-readable name shown in the MLflow UI.
        role: "variant", "comparison" (parent of several variants) or "trial".
        parent_run_id: nest the run under this run.
        force: start a fresh run even if a finished one exists.
        check: called before a run is created or resumed (not when skipped); what it raises leaves no run.
    """
    import mlflow

    tracking_uri = mlflow.get_tracking_uri()
    scope = key_hash(experiment_id, variant_key)
    with (
        variant_lock(tracking_uri, experiment_id, variant_key, run_name),
        claimed(tracking_uri, experiment_id, scope, run_name),
    ):
        existing = find_variant_run(experiment_id, variant_key, parent_run_id)
        if existing is not None and is_complete(existing) and not force:
            yield TrackedRun(existing.info.run_id, resumed=False, skipped=True)
            return
        if check is not None:
            check()
        resume_id = existing.info.run_id if existing is not None and not is_complete(existing) else None
        with _opened_run(experiment_id, variant_key, run_name, role, parent_run_id, resume_id) as tracked:
            yield tracked


@contextmanager
def _opened_run(
    experiment_id: str, variant_key: str, run_name: str, role: str, parent_run_id: str | None, resume_id: str | None
) -> Iterator[TrackedRun]:
    import mlflow

    tags = {VARIANT_KEY_TAG: variant_key, ROLE_TAG: role}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow.start_run(
        run_id=resume_id,
        experiment_id=None if resume_id else experiment_id,
        run_name=None if resume_id else run_name,
        tags=None if resume_id else tags,
        nested=mlflow.active_run() is not None,
    )
    for stale in (ERROR_TAG, PARTIAL_TAG):  # a resumed run's earlier failure is history, not its state
        if stale in run.data.tags:
            mlflow.delete_tag(stale)
    status = "FINISHED"
    try:
        yield TrackedRun(run.info.run_id, resumed=resume_id is not None, skipped=False)
    except BaseException as error:
        status = failed_status(error)
        with suppress(Exception):  # the store may be what failed: the original error matters more
            record_failure(run.info.run_id, failure_reason(error))
        raise
    finally:
        _flush_traces()  # the traces of the run's LLM calls (written in the background) land before it ends
        mlflow.end_run(status=status)


@contextmanager
def variant_lock(tracking_uri: str, experiment_id: str, variant_key: str, run_name: str) -> Iterator[None]:
    """Hold the run lock of one variant key of one store (an flock: a killed holder releases it)."""
    path = lock_folder(tracking_uri) / f"{key_hash(experiment_id, variant_key)}.lock"
    with file_lock(path, waiting=f"{run_name!r} is being run by another process; waiting for it to end ({path})"):
        yield


def key_hash(experiment_id: str, variant_key: str) -> str:
    """The short name of a variant key in one experiment: its run lock's file and its claims' tags."""
    return identity_hash([experiment_id, variant_key])[:24]


def _flush_traces() -> None:
    with suppress(Exception):  # best effort: a trace never fails a run
        import mlflow

        mlflow.flush_trace_async_logging()


def failure_reason(error: BaseException) -> str:
    """Why a run failed, fit to store and show: our errors by their message, others with their type; redacted."""
    if isinstance(error, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGINT)"
    text = redact_text(str(error))
    if isinstance(error, HarnessError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def failed_status(error: BaseException) -> str:
    """The MLflow status of a run that `error` ended: KILLED when interrupted (SIGINT, SIGTERM), else FAILED."""
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def record_failure(run_id: str, reason: str) -> None:
    """Write on the run why it failed, so a FAILED run in the store is never silent: a tag and error.txt."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, ERROR_TAG, reason[:MAX_ERROR_TAG_LENGTH])
    client.log_text(run_id, reason + "\n", ERROR_FILE)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys (lists kept as values)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def log_params(params: Mapping[str, Any], attempts: int = 5) -> None:
    """Log flattened params, redacted, each value as text cut to MLflow's limit; re-logging a resumed run is a no-op.

    Several processes may log the same params on one shared run at once (search workers on the study's
    run): a batch that collides with another writer's rows is retried with the keys still missing.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = mlflow.active_run().info.run_id
    wanted = {key: _param_text(value) for key, value in redact(flatten(params)).items()}
    for attempt in range(attempts):
        already = mlflow.get_run(run_id).data.params
        fresh = {key: value for key, value in wanted.items() if key not in already}
        try:
            for start in range(0, len(fresh), 100):
                mlflow.log_params(dict(list(fresh.items())[start : start + 100]))
            return
        except MlflowException:
            if attempt + 1 == attempts:
                raise


def log_dataset(frame: pd.DataFrame, name: str, context: str) -> None:
    """Log a table as an input dataset of the active run.

    The store keeps one dataset row per experiment and digest: two processes (search workers) logging the
    same corpus at once would both try to create it, so they take turns under the store's lock; on a tracking
    server shared by several machines the loser of that race is told the dataset exists, and links it again.
    """
    import mlflow

    dataset = mlflow.data.from_pandas(frame, name=name)
    with warnings.catch_warnings(), store_lock(mlflow.get_tracking_uri()):
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hint about integer columns (sample_id)
        tolerant_write(lambda: mlflow.log_input(dataset, context=context))


def tolerant_write(write: Callable[[], T]) -> T:
    """A store write that another machine may make at the same moment (the same tag, or dataset row, on a shared
    tracking server): the server inserts, so the loser is told the row already exists; written again, it is
    updated or found."""
    from mlflow.exceptions import MlflowException

    for attempt in range(STORE_WRITE_ATTEMPTS):
        try:
            return write()
        except MlflowException as error:
            if "already exists" not in str(error) or attempt == STORE_WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _param_text(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def log_metrics(metrics: Mapping[str, float | int | None], step: int | None = None, run_id: str | None = None) -> None:
    """Log the finite numeric metrics; undefined ones (None, NaN) are left out, not logged as 0."""
    import mlflow

    finite = {
        key: float(value)
        for key, value in metrics.items()
        if value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    }
    if finite:
        mlflow.log_metrics(finite, step=step, run_id=run_id)
