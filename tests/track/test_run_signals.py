"""SIGTERM ends a run KILLED with its reason, as Ctrl-C does, instead of leaving it RUNNING (issue #30).
A real `harness run` process, the loopback server answering slowly, a real sqlite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow import MlflowClient

from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.track.runs import ERROR_TAG

pytestmark = pytest.mark.slow


def _runs(store):
    if not store.is_file():
        return []
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("signals")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_sigterm_ends_the_run_killed_with_its_reason(tmp_path):
    llm = {"model": "openai/scripted", "max_retries": 0}
    with LoopbackServer(faults=FaultPlan(latency_s=0.5)) as server:
        llm["api_base"] = server.url
        config = {
            "corpus": {"num_samples": 40, "max_chars": 160, "seed": 5},
            "site": {"module": "model.layers.3.mlp.act_fn", "features": [5, 77]},
            "activations": {"batch_size": 16, "max_length": 32, "cache_dir": "cache"},
            "explain": {"llm": llm},
            "fade": {"rater": llm, "faithfulness": {"enabled": False}},
            "tracking": {"experiment": "signals", "store_dir": "mlruns"},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "config.yaml", "--quiet"],
            cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        store = tmp_path / "mlruns" / "mlflow.db"
        deadline = time.monotonic() + 300
        while not (server.requests and _runs(store)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err.decode()
    assert "terminated; finished work is cached" in err.decode() and "Traceback" not in err.decode()
    [run] = _runs(store)
    assert run.info.status == "KILLED" and run.data.tags[ERROR_TAG] == "terminated (SIGTERM)"
