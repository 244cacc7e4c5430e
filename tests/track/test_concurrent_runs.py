"""One run per variant key under concurrency (issue #30): two `harness run` processes started at once on one
store end with one FINISHED run per key (the comparison run and each variant); the second waits for the
first under the key's run lock, says so, then finds the runs finished. Real processes, real sqlite store,
the loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from harness.llm.loopback import FaultPlan, LoopbackServer
from harness.track.runs import ROLE_TAG, VARIANT_KEY_TAG

pytestmark = pytest.mark.slow


def _write_config(folder: Path, server_url: str) -> Path:
    llm = {"model": "openai/scripted", "api_base": server_url, "backoff_base_s": 0.01}
    config = {
        "name": "twice",
        "corpus": {"num_samples": 60, "max_chars": 160, "seed": 5},
        "site": {"module": "model.layers.3.mlp.act_fn", "features": [5, 77]},
        "activations": {"batch_size": 16, "max_length": 32, "skip_first_positions": 1, "cache_dir": "cache"},
        "explain": {"llm": llm, "selection": {"num_examples": 4}},
        "fade": {"rater": llm, "clarity_llm_calls": 2, "num_samples": 20, "faithfulness": {"enabled": False}},
        "tracking": {"experiment": "twice", "store_dir": "mlruns", "bootstrap_samples": 100},
        "variants": {"named": [{"name": "llm"}, {"name": "top-tokens", "set": {"explain.explainer": "top-tokens"}}]},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


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
