"""One run per variant key under concurrency (issue #30): two `harness run` processes started at once on one
store end with one FINISHED run per key (the comparison run and each variant); the second waits for the
first, says so, then finds the runs finished. On one machine it waits under the key's run lock; on two (each
its own cache and lock folder) sharing a tracking server, for the key's claim in the store. Real processes,
a real sqlite store or `mlflow server`, the loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow_server import mlflow_server

from configs import tiny_config, write_config
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.track.runs import ROLE_TAG, VARIANT_KEY_TAG

pytestmark = pytest.mark.slow


def _write_config(folder: Path, server_url: str, tracking: dict | None = None) -> Path:
    """tests/configs.py's config with two variants, retries at their default (two runs share the LLM server),
    the activation cache in the working folder (each machine its own) and `tracking` (default: a store there)."""
    settings = {
        "name": "twice",
        "llm": {"model": "openai/scripted", "api_base": server_url, "backoff_base_s": 0.01},
        "activations.cache_dir": "cache",
        "tracking": {"experiment": "twice", "bootstrap_samples": 100, **(tracking or {"store_dir": "mlruns"})},
        "variants": {"named": [{"name": "llm"}, {"name": "top-tokens", "set": {"explain.explainer": "top-tokens"}}]},
    }
    return write_config(folder, tiny_config(folder, server_url, settings))


def test_two_runs_of_one_config_at_once_make_one_finished_run_per_key(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    with LoopbackServer(faults=FaultPlan(latency_s=0.02)) as server:
        config = str(_write_config(tmp_path, server.url))
        command = [sys.executable, "-m", "harness", "run", config, "--quiet"]
        processes = [
            subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err.decode()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("twice").experiment_id])
    assert Counter(run.data.tags[ROLE_TAG] for run in runs) == {"comparison": 1, "variant": 2}
    assert len({run.data.tags[VARIANT_KEY_TAG] for run in runs}) == 3
    assert all(run.info.status == "FINISHED" for run in runs)
    errors = [err.decode() for _, err in outputs]
    assert any("is being run by another process; waiting for it to end" in err for err in errors), errors
    printed = "".join(out.decode() for out, _ in outputs)
    assert printed.count("skipped (already finished") == 2  # the second process found both variants done


def test_two_machines_on_one_tracking_server_run_each_key_once(tmp_path):
    """Two processes with their own cache and lock folders (two machines) start one config at the same moment
    against one `mlflow server`: one runs it, the other says another machine runs it, waits, and skips every
    variant; the LLM server answers one run's calls (each machine has its own LLM cache, so a second run would
    have asked again)."""
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with (
        mlflow_server(backend, tmp_path, "--artifacts-destination", str(tmp_path / "served"), startup_timeout_s=180)
        as tracking_url,
        LoopbackServer(faults=FaultPlan(latency_s=0.02)) as server,
    ):  # fmt: skip
        config = str(_write_config(tmp_path, server.url, {"uri": tracking_url}))
        command = [sys.executable, "-m", "harness", "run", config, "--quiet"]
        machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
        processes = []
        for machine in machines:
            (machine / "tmp").mkdir(parents=True)  # the run locks of a tracking server's keys lie in TMPDIR
            processes.append(subprocess.Popen(command, cwd=machine, env=environment | {"TMPDIR": str(machine / "tmp")},
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
        outputs = [process.communicate(timeout=900) for process in processes]
        for process, (out, err) in zip(processes, outputs):
            assert process.returncode == 0, err.decode()
        client = MlflowClient(tracking_url)
        experiment = client.get_experiment_by_name("twice")
        runs = client.search_runs([experiment.experiment_id])
        requests = server.requests
    assert Counter(run.data.tags[ROLE_TAG] for run in runs) == {"comparison": 1, "variant": 2}
    assert all(run.info.status == "FINISHED" for run in runs)
    assert not [tag for tag in experiment.tags if tag.startswith("harness.claim.")]  # every claim withdrawn
    assert requests > 0
    assert requests == sum(run.data.metrics.get("llm_requests", 0) for run in runs)
    errors = [err.decode() for _, err in outputs]
    waited = [index for index, err in enumerate(errors) if "is being run on another machine" in err]
    assert len(waited) == 1, errors
    assert "waiting for it to end, not running it twice" in errors[waited[0]]
    printed = outputs[waited[0]][0].decode()
    assert printed.count("skipped (already finished") == 2, printed
    assert "skipped" not in outputs[1 - waited[0]][0].decode()
