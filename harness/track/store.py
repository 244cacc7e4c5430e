"""Where tracked runs live: an MLflow sqlite store inside `mlruns/`, or any tracking URI.

MLflow 3 deprecates the plain `./mlruns` file store, so the default is a sqlite backend store
(`mlruns/mlflow.db`) with artifacts in `mlruns/artifacts/` beside it. `MLFLOW_TRACKING_URI` or the config
points anywhere else, a tracking server included. The database and the experiment are created under a
file lock before any writer starts, since sqlite races on schema set-up.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from harness.errors import HarnessError, OutputError
from harness.files import check_writable, file_lock, identity_hash
from harness.secrets import redact_text

DEFAULT_STORE_DIR = "mlruns"
# MLflow 3's experiment kind: a model-development experiment, whose page is its runs (not the GenAI overview).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# MLflow 3.x's UI picks its pages by a "workflow type" (GenAI or Model training) that the URL can name;
# newer UIs go by it rather than by the experiment kind, so links to our experiments carry it.
UI_WORKFLOW = "workflowType=machine_learning"
DEFAULT_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store
# The user's choice, read once: mlflow.set_tracking_uri() rewrites this variable in our own process, so
# reading it later would make one run's store the next run's default.
_ENVIRONMENT_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


class TrackingError(HarnessError):
    """The tracking store cannot be reached or is inconsistent."""


def default_tracking_uri(store_dir: str | os.PathLike[str] = DEFAULT_STORE_DIR) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None, store_dir: str | os.PathLike[str] = DEFAULT_STORE_DIR) -> str:
    """The config's URI, else MLFLOW_TRACKING_URI, else the sqlite store in `store_dir`."""
    return configured or _ENVIRONMENT_TRACKING_URI or default_tracking_uri(store_dir)


def require_store(tracking_uri: str) -> str:
    """The URI, when its store exists: reading runs from a local sqlite store that is not there would create
    an empty one, so that is a TrackingError instead."""
    db_path = _local_sqlite_path(tracking_uri)
    if db_path is not None and not db_path.is_file():
        raise TrackingError(
            f"no tracking store at {db_path}; run `harness run` first, or point --store-dir or --tracking-uri at one"
        )
    if db_path is not None:
        _check_intact(db_path)
    return tracking_uri


def _check_intact(db_path: Path) -> None:
    """TrackingError when the sqlite store is damaged (truncated, overwritten), read-only and without changing it."""
    try:
        with closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)) as connection:
            (verdict,) = connection.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as error:
        verdict = str(error)
    if verdict != "ok":
        raise TrackingError(
            f"the tracking store {db_path} is damaged ({verdict}); restore it from a copy, or point --store-dir "
            "or --tracking-uri at another store"
        )


def _local_sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise set-up work on a local sqlite store across processes (no-op for other stores)."""
    db_path = _local_sqlite_path(tracking_uri)
    if db_path is None:
        yield
        return
    with file_lock(db_path.parent / ".mlflow-setup.lock"):
        yield


def check_store_writable(tracking_uri: str) -> None:
    """OutputError unless a local sqlite store (its folder and database file) can be written; other stores
    answer for themselves."""
    db_path = _local_sqlite_path(tracking_uri)
    if db_path is None:
        return
    check_writable(db_path.parent, "the tracking store (tracking.store_dir, --store-dir)")
    if db_path.exists() and not os.access(db_path, os.W_OK):
        raise OutputError(f"cannot write the tracking store {db_path}: it is read-only; make it writable")


def lock_folder(tracking_uri: str) -> Path:
    """Where the lock files of a store's runs lie: beside a local sqlite store, else in the temporary folder
    under a hash of the URI (for a tracking server, the processes of one machine take turns)."""
    db_path = _local_sqlite_path(tracking_uri)
    if db_path is not None:
        return db_path.parent / ".run-locks"
    return Path(tempfile.gettempdir()) / "feature-harness-run-locks" / identity_hash(tracking_uri)[:24]


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Create (once, under a lock) the store and the experiment; returns the experiment id.

    For a local sqlite store, the experiment's artifacts go to `<store>/artifacts/<experiment>`. The
    experiment is tagged as a model-development experiment (EXPERIMENT_KIND_TAG), an existing one too when
    it has no kind, so the MLflow UI opens it on its runs.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    with store_lock(tracking_uri):
        try:
            client = MlflowClient(tracking_uri)
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                if EXPERIMENT_KIND_TAG not in experiment.tags:
                    client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
                return experiment.experiment_id
            db_path = _local_sqlite_path(tracking_uri)
            artifact_location = (db_path.parent / "artifacts" / _safe_name(name)).as_uri() if db_path else None
            try:
                return client.create_experiment(
                    name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            except MlflowException as error:
                # Another machine created it since we looked (the lock only spans this machine): use it.
                created = client.get_experiment_by_name(name) if error.error_code == "RESOURCE_ALREADY_EXISTS" else None
                if created is None:
                    raise
                return created.experiment_id
        except Exception as error:  # MLflow raises many types for an unreachable or broken store
            raise TrackingError(
                f"cannot open experiment {name!r} in the tracking store {tracking_uri}: {error}. "
                "Check tracking.uri / MLFLOW_TRACKING_URI, or delete a corrupted local store."
            ) from error


def _safe_name(name: str) -> str:
    """An experiment name as one folder name: never the folder itself or its parent ('.', '..')."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return safe if safe.strip(".") else "experiment"


def ui_url(tracking_uri: str) -> str:
    """Where the MLflow UI of a store is: the server itself, else where `mlflow ui` serves a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return redact_text(tracking_uri).rstrip("/")
    return DEFAULT_UI_URL


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI."""
    return f"{ui_url(tracking_uri)}/#/experiments/{experiment_id}/runs?{UI_WORKFLOW}"


def run_traces_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """A run's LLM-call traces in the MLflow UI (its Traces tab)."""
    return f"{ui_url(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}/traces?{UI_WORKFLOW}"
