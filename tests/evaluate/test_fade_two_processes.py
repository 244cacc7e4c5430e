"""`harness evaluate` under `accelerate launch` with two CPU processes (gloo): each steers and rates its share of
the features; the gathered scores equal one process's, in the same order, and a killed run resumes."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import torch
import yaml
from fade_pipeline_fixtures import KEY_ENV, fade_config
from launching import accelerate_launch, kill_midway, launch_environment

from harness.evaluate import evaluate_descriptions
from harness.testing.loopback import FaultPlan, LoopbackServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="two processes on one GPU; this check runs on CPU over gloo"),
]

FEATURES = [5, 77, 300, 512, 1000, 1400]
WORDS = ["return", "value", "module", "string", "class", "file"]


def test_two_processes_score_what_one_does_and_a_killed_run_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    site = {"kind": "neuron", "module": "model.layers.3.mlp.act_fn", "features": FEATURES}
    descriptions = pd.DataFrame({"feature": FEATURES, "description": [f"mentions '{word}'" for word in WORDS]})
    descriptions.to_csv(tmp_path / "descriptions.csv", index=False)
    with LoopbackServer() as server:
        # gini_threshold 0: every feature is steered, so each process has steering and rating to do.
        settings = {"num_samples": 30, "gini_threshold": 0.0}
        config = fade_config(
            server.url, tmp_path / "cache", site, corpus={"num_samples": 60}, max_length=48, **settings
        )
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"variants"})))
        evaluate_descriptions(config, descriptions, tmp_path / "one", progress=False)

        command = ("evaluate", str(tmp_path / "config.yaml"), "-d", str(tmp_path / "descriptions.csv"),
                   "-o", str(tmp_path / "two"), "--quiet")  # fmt: skip
        server.faults = FaultPlan(latency_s=0.1)  # slow answers, so the kill lands midway
        features = tmp_path / "two" / "features"
        try:
            kill_midway(accelerate_launch(*command), lambda: any(features.glob("*/result.json")), timeout_s=400)
        finally:
            server.faults = FaultPlan()
        finished_before = len(list(features.glob("*/result.json")))
        assert 0 < finished_before < len(FEATURES)

        rerun = subprocess.run(
            accelerate_launch(*command), env=launch_environment(), capture_output=True, text=True, timeout=600
        )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"reused from {tmp_path / 'two'}" in rerun.stdout and rerun.stdout.count("computed,") == 1  # main reports
    reused = int(rerun.stdout.split(" reused from")[0].rsplit(", ", 1)[1])
    assert reused >= finished_before
    gathered = pd.read_csv(tmp_path / "two" / "scores.csv")
    pd.testing.assert_frame_equal(gathered, pd.read_csv(tmp_path / "one" / "scores.csv"))
    assert gathered["faithfulness"].notna().any()  # steering ran, in both processes' shares
