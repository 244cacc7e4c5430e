"""A leaderboard read from an MLflow tracking server (artifacts downloaded over HTTP) is the same as one
read from a local store holding the same runs: a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from leaderboard_runs import DEMO_VARIANTS, FEATURES, histogram_png, log_variant
from mlflow_server import mlflow_server

from harness.track.store import default_tracking_uri, ensure_experiment
from leaderboard import build_site

pytestmark = pytest.mark.slow
VARIANTS = DEMO_VARIANTS[:3]


@pytest.fixture()
def tracking_server(tmp_path):
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    try:
        with mlflow_server(backend, tmp_path, "--artifacts-destination", str(tmp_path / "served-artifacts"),
                           startup_timeout_s=120) as url:  # fmt: skip
            yield url
    finally:
        mlflow.set_tracking_uri(None)


def _site(tracking_uri: str, folder: Path) -> tuple[dict, dict[str, set[str]]]:
    """The leaderboard document without run ids, and each variant's files (by variant name)."""
    experiment_id = ensure_experiment("remote-check", tracking_uri)
    png = histogram_png()
    for seed, variant in enumerate(VARIANTS):
        log_variant(experiment_id, variant, FEATURES[:6], seed=seed, plot_png=png)
    index = build_site(["remote-check"], tracking_uri, folder, progress=False)
    document = json.loads((index.parent / "leaderboard.json").read_text())
    files = {}
    for entry in document["variants"]:
        run_folder = index.parent / "variants" / entry["run_id"]
        files[entry["variant"]] = {
            str(path.relative_to(run_folder)) for path in run_folder.rglob("*") if path.is_file()
        }
    for entry in document["variants"]:
        entry.pop("run_id"), entry.pop("page")  # both name the run, whose id differs between the stores
        for rank in entry["ranks"].values():  # so does the paired comparison with the variant above
            if rank["vs_above"] is not None:
                rank["vs_above"].pop("run_id"), rank["vs_above"].pop("reference_run_id")
    document.pop("generated", None)
    return document, files


def test_a_tracking_server_gives_the_same_leaderboard_as_a_local_store(tracking_server, tmp_path):
    local_document, local_files = _site(default_tracking_uri(tmp_path / "mlruns"), tmp_path / "local-site")
    remote_document, remote_files = _site(tracking_server, tmp_path / "remote-site")
    assert remote_files == local_files
    assert any(name.endswith(".png") for name in remote_files[VARIANTS[0].name])  # plots came over HTTP
    assert remote_document["variants"] == local_document["variants"]
    assert remote_document["scores"] == local_document["scores"]
