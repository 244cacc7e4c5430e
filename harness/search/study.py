"""`harness search`: Optuna over pipeline settings, each trial one tracked MLflow run, many cooperating workers.

Storage: by default an Optuna journal file under the store folder (safe for several processes on one
machine; Optuna advises against sqlite for parallel work); any RDB URL for many machines. Several
`harness search` processes with the same study name and storage share one study.

A trial that was killed midway (its process is gone) is marked failed, with its MLflow run: on a journal file
(one machine) by the next worker, from its recorded process id; on an RDB storage (many machines) by Optuna's
heartbeats (`search.heartbeat_s`), when any worker next starts a trial. Its finished LLM calls
are reused by later trials through the LLM cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.artifacts import STUDY_PLOTS
from harness.config import HarnessConfig, result_fingerprint
from harness.errors import ConfigError, EvaluationError, HarnessError
from harness.evaluate.aggregate import aggregate_value, default_weights
from harness.search._sampling import make_sampler
from harness.search._space import apply_params, suggest_params, validate_space
from harness.secrets import redact_text
from harness.stages import SharedStages
from harness.track.agreement import log_scorer_agreement
from harness.track.claims import process_alive
from harness.track.compare import feature_scores, variants_table
from harness.track.runs import (
    failed_status,
    failure_reason,
    log_metrics,
    log_params,
    record_failure,
    tolerant_write,
)
from harness.track.store import ensure_experiment, resolve_tracking_uri, store_lock
from harness.track.variant import VariantOutcome

RUN_ID_ATTR = "mlflow_run_id"
HOST_ATTR = "host"
PID_ATTR = "pid"
FAIL_REASON_ATTR = "fail_reason"
HEARTBEAT_INTERVAL_S = 30
SCHEMA_ATTEMPTS = 5


@dataclass
class SearchOutcome:
    """The study after this worker's trials."""

    study_name: str
    storage: str
    trials_finished: int
    trials_failed: int
    best: list[dict[str, Any]]
    parent_run_id: str


def objective_value(per_feature: pd.DataFrame, weights: dict[str, float] | None) -> float:
    """The trial's quality: the aggregate of its per-feature scores (harness.evaluate.aggregate), the number a
    ranking of its run shows. Default weights as the ranking's; no feature kept is an error (the trial fails)."""
    weights = weights or default_weights([per_feature])
    value = aggregate_value(per_feature, weights)
    if value is None:
        raise EvaluationError(
            f"the trial's aggregate ({', '.join(weights)}) is undefined: every feature was left out (a weighted "
            "score undefined for a reason that is not the description's; see the run's per-feature table)"
        )
    return value


def trial_key(trial_config: HarnessConfig, study_name: str, number: int) -> str:
    """A trial's run identity: its results' identity (result_fingerprint), in its study, by trial number."""
    return f"{result_fingerprint(trial_config)}-{study_name}-trial{number}"


def storage_location(config: HarnessConfig) -> str:
    """The configured storage URL, or the journal file under the tracking store folder."""
    if config.search.storage:
        return config.search.storage
    return str(Path(config.tracking.store_dir).resolve() / "optuna-journal.log")


def make_storage(location: str, heartbeat_s: int = HEARTBEAT_INTERVAL_S):
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in location:
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        try:
            for attempt in range(SCHEMA_ATTEMPTS):
                try:
                    return RDBStorage(
                        location, heartbeat_interval=heartbeat_s, grace_period=4 * heartbeat_s, **_stale_callback()
                    )
                except (IntegrityError, ProgrammingError):
                    # Workers started together on a fresh database race to create Optuna's tables; the loser
                    # finds them made a moment later.
                    if attempt == SCHEMA_ATTEMPTS - 1:
                        raise
                    time.sleep(0.5 * (attempt + 1))
        except (
            optuna.exceptions.StorageInternalError,
            ValueError,
            ImportError,
            IntegrityError,
            ProgrammingError,
        ) as error:
            raise ConfigError(
                f"cannot open the search storage {redact_text(location)}: {redact_text(str(error))}; check "
                "search.storage (for PostgreSQL: pip install 'feature-harness[postgres]', server reachable)"
            ) from error
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(location))


def _pruner(config: HarnessConfig):
    import optuna

    if config.search.pruner == "none" or config.search.objective.minimise:
        return optuna.pruners.NopPruner()  # Optuna does not prune multi-objective studies
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def _stale_callback() -> dict[str, Any]:
    """The RDB storage's argument for `_silent_trial_failed` (renamed in Optuna 4.9)."""
    import inspect

    from optuna.storages import RDBStorage

    name = "heartbeat_stale_trial_callback"
    return {name if name in inspect.signature(RDBStorage).parameters else "failed_trial_callback": _silent_trial_failed}


def _silent_trial_failed(study, trial) -> None:
    """Optuna (RDB storage) failed a trial whose heartbeat stopped: its worker died. Its MLflow run says so (the
    trial itself is finished by then and takes no more attributes)."""
    if RUN_ID_ATTR in trial.user_attrs:
        reason = f"the worker of trial {trial.number} stopped sending heartbeats (its process died or lost the storage)"
        _fail_run(trial.user_attrs[RUN_ID_ATTR], reason)


def _fail_run(run_id: str, reason: str) -> None:
    from mlflow import MlflowClient

    record_failure(run_id, reason)
    MlflowClient().set_terminated(run_id, status="FAILED")


def fail_dead_trials(study) -> list[int]:
    """Trials left RUNNING by a process of this machine that no longer exists: mark them (and their runs) failed."""
    import optuna

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get(HOST_ATTR) != socket.gethostname() or process_alive(int(attrs.get(PID_ATTR, -1))):
            continue
        reason = f"the worker process {attrs.get(PID_ATTR)} on {attrs.get(HOST_ATTR)} died during the trial"
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if RUN_ID_ATTR in attrs:
            _fail_run(attrs[RUN_ID_ATTR], reason)
        failed.append(trial.number)
    return failed


def _study_parent_run(experiment_id: str, study_name: str, storage: str, tracking_uri: str) -> str:
    """The study's parent MLflow run, created once and shared by every worker.

    On a local store the store lock serialises the workers; on a tracking server shared by several machines two
    may create one at the same moment: every worker then takes the oldest (start time, then run id) and the one
    it created, if another, is deleted, so all trials nest under one run.
    """
    from mlflow import MlflowClient

    key = "study-" + hashlib.sha256(f"{study_name}|{storage}".encode()).hexdigest()[:16]
    client = MlflowClient(tracking_uri)

    def oldest() -> str | None:
        found = client.search_runs([experiment_id], filter_string=f"tags.`harness.variant_key` = '{key}'")
        return min(found, key=lambda run: (run.info.start_time, run.info.run_id)).info.run_id if found else None

    with store_lock(tracking_uri):
        if (existing := oldest()) is not None:
            return existing
        created = client.create_run(
            experiment_id, run_name=f"study {study_name}", tags={"harness.variant_key": key, "harness.role": "study"}
        ).info.run_id
        winner = oldest() or created
        if winner != created:
            client.delete_run(created)
        return winner


def run_search(
    config: HarnessConfig,
    *,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    progress: bool = True,
) -> SearchOutcome:
    """Run this worker's share of the study (n_trials / timeout), each trial a nested MLflow run.

    Args:
        config: the base config; `search` declares the space, objective, sampler, storage and budget.
        n_trials: trials for this worker (default search.n_trials).
        timeout_s: stop starting trials after this many seconds (default search.timeout_s).
        progress: show progress bars.
    """
    import optuna

    validate_space(config)
    search = config.search
    study_name = search.study_name or config.name
    location = storage_location(config)
    tracking_uri = resolve_tracking_uri(config.tracking.uri, config.tracking.store_dir)
    experiment_id = ensure_experiment(config.tracking.experiment, tracking_uri)
    directions = ["maximize"] + (["minimize"] if search.objective.minimise else [])
    study = optuna.create_study(
        study_name=study_name,
        storage=make_storage(location, search.heartbeat_s),
        load_if_exists=True,
        directions=directions,
        sampler=make_sampler(config, location),
        pruner=_pruner(config),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["quality"] + ([search.objective.minimise] if search.objective.minimise else []))
    if "://" not in location:  # on an RDB storage Optuna's heartbeats fail them, from any machine
        fail_dead_trials(study)
    parent_run_id = _study_parent_run(experiment_id, study_name, location, tracking_uri)
    shared = SharedStages(progress=progress)

    def run_trial(trial: optuna.Trial):
        from mlflow import MlflowClient

        from harness.track.variant import track_variant  # looked up per trial, so a test can replace it

        trial.set_user_attr(HOST_ATTR, socket.gethostname())
        trial.set_user_attr(PID_ATTR, os.getpid())
        params = suggest_params(trial, config)
        trial_config = apply_params(config, params)
        key = trial_key(trial_config, study_name, trial.number)

        def report(per_feature: pd.DataFrame, step: int) -> None:
            weights = search.objective.weights or default_weights([per_feature])
            running = aggregate_value(per_feature, weights)
            if len(directions) == 1 and running is not None:
                trial.report(running, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after feature chunk {step}")

        try:
            outcome: VariantOutcome = track_variant(
                f"trial {trial.number}",
                trial_config,
                key,
                experiment_id=experiment_id,
                parent_run_id=parent_run_id,
                shared=shared,
                role="trial",
                chunk_size=search.chunk_size,
                on_chunk=report,
                on_run=lambda run_id: trial.set_user_attr(RUN_ID_ATTR, run_id),
            )
        except optuna.TrialPruned:
            MlflowClient().set_tag(trial.user_attrs[RUN_ID_ATTR], "harness.pruned", "true")
            raise
        per_feature = outcome.per_feature
        if per_feature is None:  # a finished run found again: its table is in the store
            per_feature = feature_scores([outcome.run_id], tracking_uri)[outcome.run_id]
        quality = objective_value(per_feature if per_feature is not None else pd.DataFrame({"feature": []}),
                                  search.objective.weights)  # fmt: skip
        log_metrics({"objective": quality, "trial_number": trial.number}, run_id=outcome.run_id)
        if search.objective.minimise:
            cost = outcome.metrics.get("cost_usd" if search.objective.minimise == "cost_usd" else "tokens") or 0.0
            return quality, float(cost)
        return quality

    def objective(trial: optuna.Trial):
        try:
            return run_trial(trial)
        except HarnessError as error:  # bad input or a failed backend: this trial fails, the search goes on
            trial.set_user_attr(FAIL_REASON_ATTR, failure_reason(error))
            raise

    try:
        with _failed_trials_told_plainly():
            study.optimize(
                objective,
                n_trials=n_trials if n_trials is not None else search.n_trials,
                timeout=timeout_s if timeout_s is not None else search.timeout_s,
                catch=(HarnessError,),
                show_progress_bar=False,
            )
    except BaseException as error:  # Ctrl-C or a bug: the study's run says this worker stopped, and why
        from mlflow import MlflowClient

        record_failure(parent_run_id, f"worker {os.getpid()} on {socket.gethostname()}: {failure_reason(error)}")
        MlflowClient().set_terminated(parent_run_id, status=failed_status(error))
        raise
    best = _tag_best_trials(study)
    _log_study(study, parent_run_id, config, tracking_uri)
    states = [trial.state for trial in study.trials]
    return SearchOutcome(
        study_name, location, states.count(optuna.trial.TrialState.COMPLETE), states.count(optuna.trial.TrialState.FAIL),
        best, parent_run_id,
    )  # fmt: skip


class _WithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HarnessError):
            record.exc_info = record.exc_text = None
        return True


@contextmanager
def _failed_trials_told_plainly() -> Iterator[None]:
    """Optuna logs a failed trial with its traceback; one of our errors is told by its message alone, as the CLI does."""
    handlers = logging.getLogger("optuna").handlers
    plain = _WithoutTraceback()
    for handler in handlers:
        handler.addFilter(plain)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(plain)


def _tag_best_trials(study) -> list[dict[str, Any]]:
    """Tag the MLflow runs of the best trial (or the Pareto front) and return their summaries."""
    from mlflow import MlflowClient

    client = MlflowClient()
    completed = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    if not completed:
        return []
    best_trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    best_numbers = {trial.number for trial in best_trials}
    for trial in completed:
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            best = str(trial.number in best_numbers).lower()
            tolerant_write(lambda: client.set_tag(run_id, "harness.best_trial", best))  # every worker tags them
    return [
        {
            "trial": trial.number,
            "values": trial.values,
            "params": trial.params,
            "run_id": trial.user_attrs.get(RUN_ID_ATTR),
        }
        for trial in best_trials
    ]


def _log_study(study, parent_run_id: str, config: HarnessConfig, tracking_uri: str) -> None:
    """Study plots, the best values and the agreement between scorers across trials on the study's parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    with mlflow.start_run(run_id=parent_run_id):
        log_params({"search": config.search.model_dump(mode="json")})
        log_metrics({"trials_finished": float(len(completed)), "trials_total": float(len(study.trials))})
        if not completed:
            return
        trial_runs = [trial.user_attrs[RUN_ID_ATTR] for trial in completed if RUN_ID_ATTR in trial.user_attrs]
        if trial_runs:
            log_scorer_agreement(variants_table([config.tracking.experiment], tracking_uri, run_ids=trial_runs))
        multi = len(study.directions) > 1
        target = {"target": _first_value, "target_name": "quality"} if multi else {}
        figures = {"optimization_history": lambda: optuna_plots.plot_optimization_history(study, **target)}
        if multi:
            figures["pareto_front"] = lambda: optuna_plots.plot_pareto_front(study)
        else:
            log_metrics({"best_objective": study.best_value})
        if len(completed) > 1 and len({tuple(sorted(t.params.items())) for t in completed}) > 1:
            figures["param_importances"] = lambda: optuna_plots.plot_param_importances(study, **target)
        for name, draw in figures.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. one distinct value: no importance
                mlflow.log_text(f"plot {name} not drawn: {error}", f"{STUDY_PLOTS}/{name}.txt")
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            mlflow.log_figure(figure, f"{STUDY_PLOTS}/{name}.png")
            plt.close(figure)


def _first_value(trial) -> float:
    return trial.values[0]
