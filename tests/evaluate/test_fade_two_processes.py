"""`harness evaluate` under `accelerate launch` with two CPU processes (gloo): each steers and rates its share of
the features; the gathered scores equal one process's, in the same order, and a killed run resumes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import torch
import yaml
from fade_pipeline_fixtures import KEY_ENV, fade_config

from harness.evaluate import evaluate_descriptions
from harness.llm.loopback import FaultPlan, LoopbackServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="two processes on one GPU; this check runs on CPU over gloo"),
]

FEATURES = [5, 77, 300, 512, 1000, 1400]
WORDS = ["return", "value", "module", "string", "class", "file"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(_free_port()), "-m", "harness", "evaluate", str(tmp_path / "config.yaml"),
                  "-d", str(tmp_path / "descriptions.csv"), "-o", str(tmp_path / "two"), "--quiet"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        server.faults = FaultPlan(latency_s=0.1)  # slow answers, so the kill lands midway
        try:
            process = subprocess.Popen(launch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 400
            while not list((tmp_path / "two" / "features").glob("*/result.json")):
                assert process.poll() is None, process.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "no feature finished in time"
                time.sleep(0.2)
            # the launcher and both processes (torch's launcher starts each in a session of its own)
            for launched in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
                launched.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            server.faults = FaultPlan()
        finished_before = len(list((tmp_path / "two" / "features").glob("*/result.json")))
        assert 0 < finished_before < len(FEATURES)

        launch[launch.index("--main_process_port") + 1] = str(_free_port())
        rerun = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"reused from {tmp_path / 'two'}" in rerun.stdout and rerun.stdout.count("computed,") == 1  # main reports
    reused = int(rerun.stdout.split(" reused from")[0].rsplit(", ", 1)[1])
    assert reused >= finished_before
    gathered = pd.read_csv(tmp_path / "two" / "scores.csv")
    pd.testing.assert_frame_equal(gathered, pd.read_csv(tmp_path / "one" / "scores.csv"))
    assert gathered["faithfulness"].notna().any()  # steering ran, in both processes' shares
