"""`harness run` end to end: real model, real loopback LLM server through litellm, real MLflow sqlite store.

Read back with MlflowClient: nesting, params, metrics, artifacts; a planted API key appears nowhere; a run
killed with SIGKILL midway resumes into the same MLflow run with the same results as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

import configs
from configs import tiny_config
from harness.artifacts import PAIRED_COMPARISONS_TABLE, SCORER_AGREEMENT_PLOT, SCORER_AGREEMENT_TABLE
from harness.config import load_config
from harness.testing.loopback import FaultPlan
from harness.track.agreement import rank_correlations
from harness.track.experiment import run_experiment

pytestmark = pytest.mark.slow

KEY_ENV = "HARNESS_TEST_LOOPBACK_KEY"
PLANTED_KEY = "sk-planted-4f9c2e7a1b3d5c6e"


def write_config(folder: Path, server_url: str, experiment: str) -> Path:
    data = tiny_config(
        folder,
        server_url,
        {
            "name": "pipeline-test",
            "llm": {"model": "openai/scripted", "api_base": server_url, "api_key_env": KEY_ENV, "backoff_base_s": 0.01},
            "corpus.num_samples": 120,
            "corpus.seed": 3,
            "site.features": [5, 77, 300],
            "explain.selection.num_examples": 6,
            "fade.num_samples": 40,
            "fade.faithfulness": {"num_samples": 4, "generation_length": 6, "modification_factors": [0, 10]},
            "scorers": {"enabled": ["embedding", "intruder"]},
            "tracking.experiment": experiment,
            "tracking.bootstrap_samples": 200,
            "tracking.plot_features": 1,
            "variants": {
                "grid": {"explain.prompt.template": ["plain", "delphi"]},
                "named": [{"name": "top-tokens", "set": {"explain.explainer": "top-tokens"}}],
            },
        },
    )
    return configs.write_config(folder, data)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, server):
    """One uninterrupted run of three variants; the store is read back by the tests below."""
    folder = tmp_path_factory.mktemp("run")
    config = load_config(write_config(folder, server.url, "uninterrupted"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, PLANTED_KEY)
        patch.chdir(folder)
        outcomes = run_experiment(config, progress=False)
        again = run_experiment(config, progress=False)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield {"folder": folder, "config": config, "outcomes": outcomes, "again": again, "client": MlflowClient(uri)}
    mlflow.set_tracking_uri(None)


def _runs(client, experiment):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id])


def test_variants_nest_under_one_comparison_run(finished):
    runs = _runs(finished["client"], "uninterrupted")
    parents = [run for run in runs if run.data.tags["harness.role"] == "comparison"]
    children = [run for run in runs if run.data.tags["harness.role"] == "variant"]
    assert len(parents) == 1 and len(children) == 3
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parents[0].info.run_id}
    assert sorted(run.info.run_name for run in children) == ["template=delphi", "template=plain", "top-tokens"]
    assert all(run.info.status == "FINISHED" for run in runs)


def test_params_metrics_and_artifacts_are_recorded(finished):
    client = finished["client"]
    runs = {run.info.run_name: run for run in _runs(client, "uninterrupted")}
    delphi = runs["template=delphi"]
    assert delphi.data.params["explain.prompt.template"] == "delphi"
    assert delphi.data.params["explain.selection.num_examples"] == "6"
    assert delphi.data.params["fade.rater.model"] == "openai/scripted"
    assert delphi.data.params["site.module"] == "model.layers.3.mlp.act_fn"
    assert delphi.data.params["package_version"]
    assert runs["top-tokens"].data.params["explain.explainer"] == "top-tokens"
    metrics = delphi.data.metrics
    assert metrics["features"] == 3
    for score in ("clarity", "responsiveness", "purity"):
        assert 0 <= metrics[f"{score}_defined"] <= 1
    assert metrics["clarity_defined"] == 1 and 0 <= metrics["clarity_mean"] <= 1
    assert metrics["clarity_ci_low"] <= metrics["clarity_mean"] <= metrics["clarity_ci_high"]
    assert metrics["llm_requests"] > 0 and metrics["time_evaluate_s"] > 0
    assert metrics["explain_cost_usd"] == 0 and metrics["cost_usd"] == 0  # no price for the scripted model
    assert metrics["answers_explainer"] == 3 and metrics["answers_fade_rating"] > 0
    rates = [metrics[f"parse_rate_{kind}"] for kind in ("explainer", "fade_rating", "fade_generation")]
    assert rates == [1.0, 1.0, 1.0]  # the scripted answers fit their schemas
    assert "answers_explainer" not in runs["top-tokens"].data.metrics  # no answers, no rate
    artifacts = {item.path for item in client.list_artifacts(delphi.info.run_id)}
    assert {"config.yaml", "plots", "tables"} <= artifacts
    table = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=delphi.info.run_id, artifact_path="tables/per_feature.json")
        ).read_text()
    )
    assert table["columns"][:3] == ["feature", "description", "explainer"]
    assert sorted(row[0] for row in table["data"]) == [5, 77, 300]
    plots = {item.path for item in client.list_artifacts(delphi.info.run_id, "plots")}
    assert {"plots/score_distributions.png", "plots/radar_means.png", "plots/features"} <= plots
    assert len(delphi.inputs.dataset_inputs) == 1
    # The extra scorers run next to FADE on the same descriptions: their columns and summaries are there too.
    assert "embedding" in table["columns"] and "embedding_reason" in table["columns"]
    assert 0 <= metrics["embedding_defined"] <= 1 and metrics["time_scorers_s"] > 0
    assert "intruder" in table["columns"] and "intruder_trials" in table["columns"]
    assert 0 <= metrics["intruder_defined"] <= 1


def test_the_sample_tables_hold_each_text_once_and_read_back_as_fade_rated_them(finished, tmp_path):
    """Top examples, rated samples and continuations name samples by id; each sample's text is once in
    tables/corpus_samples.json, and the leaderboard reads every row back with the text FADE rated."""
    from leaderboard._read import EXAMPLE_FIELDS, RATED_FIELDS, read_run_artifacts

    run_id = {run.info.run_name: run for run in _runs(finished["client"], "uninterrupted")}[
        "template=delphi"
    ].info.run_id
    tables = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables", dst_path=str(tmp_path)))
    corpus = json.loads((tables / "corpus_samples.json").read_text())
    assert corpus["columns"] == ["sample_id", "text", "tokens"]
    ids = [row[0] for row in corpus["data"]]
    assert ids == sorted(set(ids))  # once each
    for name in ("top_examples.json", "rated_samples.json"):
        raw = (tables / name).read_text()
        assert not any(json.dumps(row[1]) in raw for row in corpus["data"]), f"a sample's text is in {name}"

    (workdir,) = {path.parent for path in finished["folder"].rglob(f"usage-{run_id}.jsonl")}
    natural = pd.concat(
        pd.read_csv(path, keep_default_na=False).assign(feature=int(path.parent.name))
        for path in (workdir / "fade" / "features").glob("*/natural_ratings.csv")
    )
    continuations = pd.concat(
        pd.read_csv(path, keep_default_na=False).assign(feature=int(path.parent.name))
        for path in (workdir / "fade" / "features").glob("*/continuations.csv")
    )
    read = read_run_artifacts(run_id, finished["client"].tracking_uri, tmp_path / "staging")
    stage, sample, text, rating = (RATED_FIELDS.index(name) for name in ("stage", "sample_id", "text", "rating"))
    rows = [
        (feature, *(row[i] for i in (stage, sample, text, rating)))
        for feature, rated in read.rated_samples.items()
        for row in rated
    ]
    fade_rows = [("responsiveness", row.sample_id, row.text, row.rating) for row in natural.itertuples()]
    fade_rows += [("faithfulness", row.sample_id, row.continuation, row.rating) for row in continuations.itertuples()]
    features = [*natural["feature"], *continuations["feature"]]
    assert sorted(rows, key=repr) == sorted(((f, *r) for f, r in zip(features, fade_rows)), key=repr)
    assert {row[1] for row in rows} == {"responsiveness", "faithfulness"}

    texts = {row[0]: row[1] for row in corpus["data"]}
    tokens_at, activations_at = EXAMPLE_FIELDS.index("tokens"), EXAMPLE_FIELDS.index("activations")
    for feature, examples in read.top_examples.items():
        assert feature in (5, 77, 300) and len(examples) > 0
        for example in examples:
            assert example[EXAMPLE_FIELDS.index("text")] == texts[example[EXAMPLE_FIELDS.index("sample_id")]]
            assert len(example[tokens_at]) == len(example[activations_at]) > 0
        peaks = [max(example[activations_at]) for example in examples]
        assert peaks == sorted(peaks, reverse=True)  # ranked by their peak


def test_the_intruder_score_is_the_same_in_every_variant(finished):
    """It reads no description: the variants differ in their descriptions only, so they get one number."""
    runs = [run for run in _runs(finished["client"], "uninterrupted") if run.data.tags["harness.role"] == "variant"]
    summaries = {(run.data.metrics.get("intruder_mean"), run.data.metrics["intruder_defined"]) for run in runs}
    assert len(runs) == 3 and len(summaries) == 1, summaries
    assert all(
        run.data.metrics.get("answers_intruder", 0) == runs[0].data.metrics.get("answers_intruder", 0) for run in runs
    )


def test_the_comparison_run_holds_the_agreement_between_scorers_across_its_variants(finished):
    client = finished["client"]
    runs = _runs(client, "uninterrupted")
    parent = next(run for run in runs if run.data.tags["harness.role"] == "comparison")
    children = [run for run in runs if run.data.tags["harness.role"] == "variant"]
    expected = rank_correlations(pd.DataFrame([run.data.metrics for run in children]))  # read back independently
    assert "embedding" in expected.scores and len(expected.scores) >= 3
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, SCORER_AGREEMENT_TABLE)).read_text())
    logged = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(row["first"], row["second"], row["variants"], row["reason"]) for row in logged] == [
        (pair.first, pair.second, pair.variants, pair.reason) for pair in expected.pairs
    ]
    assert [row["rho"] for row in logged] == [
        pytest.approx(pair.rho) if pair.rho is not None else None for pair in expected.pairs
    ]
    for pair in expected.pairs:
        assert parent.data.metrics.get(f"rank_corr.{pair.first}.{pair.second}") == (
            pytest.approx(pair.rho) if pair.rho is not None else None
        )
    assert SCORER_AGREEMENT_PLOT in {item.path for item in client.list_artifacts(parent.info.run_id, "plots")}


def test_the_comparison_run_holds_the_paired_comparisons_of_its_variants(finished):
    client = finished["client"]
    runs = _runs(client, "uninterrupted")
    parent = next(run for run in runs if run.data.tags["harness.role"] == "comparison")
    children = {run.info.run_id: run for run in runs if run.data.tags["harness.role"] == "variant"}
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, PAIRED_COMPARISONS_TABLE)).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    criteria = list(dict.fromkeys(row["criterion"] for row in rows))
    assert criteria[:2] == ["aggregate", "clarity"] and "embedding" in criteria
    for criterion in criteria:  # each variant after the first vs the one above it
        pairs = [(row["reference_run_id"], row["run_id"]) for row in rows if row["criterion"] == criterion]
        assert len(pairs) == len(children) - 1 and all(a in children and b in children for a, b in pairs)
        assert all(pairs[i][1] == pairs[i + 1][0] for i in range(len(pairs) - 1))  # a chain down the ranking
    # Three features are too few for a test: every comparison says so, none claims a tie or a win.
    assert all(row["significant"] is None and row["p_value"] is None for row in rows)
    assert all(row["reason"].startswith("only ") and "(a test needs 10)" in row["reason"] for row in rows)


def test_a_finished_variant_is_skipped_on_rerun(finished):
    assert all(not outcome.skipped for outcome in finished["outcomes"])
    assert all(outcome.skipped for outcome in finished["again"])
    assert [o.run_id for o in finished["again"]] == [o.run_id for o in finished["outcomes"]]
    assert len(_runs(finished["client"], "uninterrupted")) == 4


def test_the_planted_api_key_is_nowhere_in_the_store_or_caches(finished):
    leaked = []
    for path in finished["folder"].rglob("*"):
        if path.is_file() and PLANTED_KEY.encode() in path.read_bytes():
            leaked.append(str(path))
    assert not leaked, f"the API key leaked into {leaked}"


def test_sigkill_midway_then_rerun_resumes_the_same_run(tmp_path, server, finished):
    config_path = write_config(tmp_path, server.url, "killed")
    env = {**os.environ, KEY_ENV: PLANTED_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the store is the config's
    command = [sys.executable, "-m", "harness", "run", str(config_path), "--quiet"]
    server.faults = FaultPlan(latency_s=0.15)  # slow answers, so the kill lands inside the first variant
    try:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        features = tmp_path / "cache" / "runs"
        deadline = time.monotonic() + 300
        while not list(features.glob("*/fade/features/*/result.json")):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no feature finished in time"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        server.faults = FaultPlan()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    before = _runs(client, "killed")
    interrupted = [run for run in before if run.info.status == "RUNNING" and run.data.tags["harness.role"] == "variant"]
    assert len(interrupted) == 1
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _runs(client, "killed")
    variants = [run for run in after if run.data.tags["harness.role"] == "variant"]
    assert len(variants) == 3 and all(run.info.status == "FINISHED" for run in after)
    assert interrupted[0].info.run_id in {run.info.run_id for run in variants}
    reference = {run.info.run_name: run.data.metrics for run in _runs(finished["client"], "uninterrupted")}
    for run in variants:
        for score in ("clarity", "responsiveness", "purity", "faithfulness"):
            assert run.data.metrics.get(f"{score}_mean") == reference[run.info.run_name].get(f"{score}_mean"), (
                run.info.run_name,
                score,
            )
    # What the killed process spent is still counted: the tokens equal the uninterrupted run's (answers it
    # got were cached, so the rerun did not ask for them again), and calls are at least as many (a call in
    # flight at the kill is sent again).
    for run in variants:
        expected = reference[run.info.run_name]
        assert expected["prompt_tokens"] > 0
        for metric in ("prompt_tokens", "completion_tokens", "tokens"):
            assert run.data.metrics[metric] == expected[metric], (run.info.run_name, metric)
        assert run.data.metrics["llm_calls"] >= expected["llm_calls"], run.info.run_name
