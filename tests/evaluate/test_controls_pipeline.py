"""Randomized controls end to end: `harness run` with a trained SAE and its random-sae control, tracked in a real
store, rated by the loopback server; the controls table pairs them through the tags the run set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fade_pipeline_fixtures import KEY_ENV, PLANTED_WORD, fade_config, token_detector_sae
from mlflow import MlflowClient

from harness.activations import _calibration
from harness.artifacts import CONTROLS_TABLE
from harness.cli import main
from harness.config import parse_config, result_fingerprint
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer
from harness.track.compare import load_comparison

pytestmark = pytest.mark.slow


def test_a_random_sae_control_runs_is_tagged_and_is_tested_against_its_trained_sae(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "dummy")
    monkeypatch.chdir(tmp_path)
    calibrated = []  # each calibration pass (a random SAE's: read once, shared by every stage)
    read = _calibration.site_inputs
    monkeypatch.setattr(
        _calibration, "site_inputs", lambda *args, **kwargs: calibrated.append(1) or read(*args, **kwargs)
    )
    loaded = load_subject_model(parse_config({}).model)
    sae = token_detector_sae(tmp_path / "sae", loaded, [PLANTED_WORD, "each", "such"])
    with LoopbackServer() as server:
        base = fade_config(
            server.url, tmp_path / "cache", {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}},
            faithfulness={"enabled": False},
        ).model_dump(mode="json")  # fmt: skip
        base["explain"] = {"explainer": "top-tokens"}
        base["tracking"] = {"experiment": "controls", "store_dir": str(tmp_path / "mlruns"), "bootstrap_samples": 100}
        base["variants"] = {"named": [{"name": "trained", "set": {}},
                                      {"name": "random-sae", "set": {"site.sae.weights": "random"}}]}  # fmt: skip
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(base))
        assert main(["run", str(path), "--quiet"]) == 0
    assert len(calibrated) == 1
    printed = capsys.readouterr().out  # the end of `harness run`: the same comparison as harness compare
    assert "different feature sites" in printed and "random-sae (mann-whitney)" in printed
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("controls").experiment_id], "tags.`harness.role` = 'variant'"
    )
    outcomes = {run.info.run_name: run for run in runs}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    control = outcomes["random-sae"].data.tags
    trained_key = outcomes["trained"].data.tags["harness.variant_key"]
    assert control["harness.control"] == "random-sae" and control["harness.control_of"] == trained_key
    assert trained_key == result_fingerprint(parse_config({**base, "variants": {}}))
    # The planted detectors' descriptions name their word; the random latents fire as often on other tokens.
    assert outcomes["trained"].data.metrics["clarity_mean"] > outcomes["random-sae"].data.metrics["clarity_mean"]
    comparison = load_comparison(["controls"], f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    rows = [item for item in comparison.controls if item.criterion == "clarity"]
    assert [(item.control, item.variant, item.control_variant) for item in rows] == [
        ("random-sae", "trained", "random-sae")
    ]
    assert rows[0].variant_features == rows[0].control_features == 3  # three latents each: too few to test
    parent = client.search_runs(
        [client.get_experiment_by_name("controls").experiment_id], "tags.`harness.role` = 'comparison'"
    )[0]
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, CONTROLS_TABLE)).read_text())
    assert {dict(zip(logged["columns"], row))["control"] for row in logged["data"]} == {"random-sae"}
