"""Reading tracked runs: numbers and settings match what the runs logged; bad stores fail clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from leaderboard_runs import DEMO_VARIANTS, FEATURES, log_variant
from mlflow import MlflowClient
from paired_reference import aggregate_values, expected_ties, per_feature_values

from harness.artifacts import CORPUS_SAMPLES_TABLE, RATED_SAMPLES_TABLE
from harness.errors import ConfigError
from harness.score_names import FADE_SCORES
from harness.stages import corpus_samples_table, rated_samples_table
from harness.track.runs import log_metrics, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment
from leaderboard import LeaderboardError
from leaderboard._read import EXAMPLE_FIELDS, RATED_FIELDS, read_ranked_variants, read_run_artifacts


def _per_feature(uri: str, run_id: str) -> list[dict]:
    path = Path(MlflowClient(uri).download_artifacts(run_id, "tables/per_feature.json"))
    content = json.loads(path.read_text())
    return [dict(zip(content["columns"], row)) for row in content["data"]]


def test_entries_carry_the_runs_numbers_best_aggregate_first(store):
    ranked = read_ranked_variants(["demo"], store.uri)
    assert ranked.scores == list(FADE_SCORES)
    assert ranked.weights == {name: 1.0 for name in FADE_SCORES}
    assert {entry.variant for entry in ranked.entries} == {variant.name for variant in DEMO_VARIANTS}
    run_ids = [entry.run_id for entry in ranked.entries]
    # The aggregate, written out independently: per feature, undefined-by-the-description's-fault counts 0.
    aggregates = dict(zip(run_ids, aggregate_values(store.uri, run_ids)))
    expected_aggregate = {}
    for entry in ranked.entries:
        rows = _per_feature(store.uri, entry.run_id)
        for score in FADE_SCORES:
            defined = [row[score] for row in rows if row[score] is not None]
            assert entry.scores[score].mean == pytest.approx(float(np.mean(defined)) if defined else None)
            assert entry.scores[score].defined == pytest.approx(len(defined) / len(rows))
        expected_aggregate[entry.run_id] = float(np.mean(list(aggregates[entry.run_id].values())))
        assert entry.aggregate == pytest.approx(expected_aggregate[entry.run_id])
        assert entry.aggregate_summary.defined == pytest.approx(len(aggregates[entry.run_id]) / len(rows))
        assert entry.aggregate_summary.ci_low <= entry.aggregate <= entry.aggregate_summary.ci_high
        assert entry.features == len(FEATURES)
        assert entry.tokens == entry.prompt_tokens + entry.completion_tokens == 960 * 40 * len(FEATURES)
        assert entry.page == f"variants/{entry.run_id}/index.html"
    assert run_ids == sorted(run_ids, key=lambda run_id: -expected_aggregate[run_id])
    # Ties under the aggregate come from the paired test vs the row above, on the same per-feature values.
    tied = expected_ties(store.uri, run_ids, "aggregate")
    assert [entry.tied for entry in ranked.entries] == [False, *tied]
    ranks = [1]
    for position, tie in enumerate(tied, start=2):
        ranks.append(ranks[-1] if tie else position)
    assert [entry.rank for entry in ranked.entries] == ranks
    assert all(entry.ranks["aggregate"].vs_above.tested for entry in ranked.entries[1:])


def test_settings_come_from_the_logged_config(store):
    entries = {entry.variant: entry for entry in read_ranked_variants(["demo"], store.uri).entries}
    settings = entries["gpt-4o · delphi · 20 examples"].settings
    assert settings.model_dump() == {
        "explainer": "llm",
        "explainer_model": "openai/gpt-4o",
        "prompt": "delphi",
        "num_examples": "20",
        "selection": "top",
        "rater": "openai/gpt-4o-mini",
    }
    assert entries["gpt-4o-mini · stratified"].settings.selection == "stratified"
    assert entries["top-tokens baseline"].settings.explainer == "top-tokens"
    assert entries["claude-haiku · neuron-explainer"].settings.rater == "anthropic/claude-3-5-haiku"


def test_ranks_by_a_score_tie_when_the_paired_test_finds_no_difference(store):
    ranked = read_ranked_variants(["demo"], store.uri, rank_by="clarity")
    entries = ranked.entries
    means = [entry.scores["clarity"].mean for entry in entries]
    assert means == sorted(means, reverse=True)
    tied = expected_ties(store.uri, [entry.run_id for entry in entries], "clarity")
    for (above, below), tie in zip(zip(entries, entries[1:]), tied):
        assert below.tied == tie
        assert below.rank == (above.rank if tie else entries.index(below) + 1)
        vs = below.ranks["clarity"].vs_above
        assert (vs.reference_run_id, vs.run_id, vs.features) == (above.run_id, below.run_id, len(FEATURES))
        assert vs.mean_difference == pytest.approx(
            np.mean([below_value - above_value for above_value, below_value in zip(
                *(per_feature_values(store.uri, entry.run_id, "clarity").values() for entry in (above, below))
            )])
        )  # fmt: skip
    assert entries[0].ranks["clarity"].vs_above is None
    assert any(tied) and not all(tied), "the demo has both tied and separated neighbours by clarity"
    assert [entry.ranks["clarity"].rank for entry in entries] == [entry.rank for entry in entries]


def test_weights_change_the_aggregate(store):
    weights = {"clarity": 3.0, "purity": 1.0}
    for entry in read_ranked_variants(["demo"], store.uri, weights=weights).entries:
        rows = _per_feature(store.uri, entry.run_id)
        # purity undefined for the description's fault (no sample rated 2) counts 0
        expected = np.mean([(3 * row["clarity"] + (row["purity"] or 0.0)) / 4 for row in rows])
        assert entry.aggregate == pytest.approx(expected)


def test_bad_requests_fail_with_clear_errors(store):
    with pytest.raises(ConfigError, match="no experiment 'nope'"):
        read_ranked_variants(["nope"], store.uri)
    with pytest.raises(ConfigError, match="cannot rank by 'novelty'"):
        read_ranked_variants(["demo"], store.uri, rank_by="novelty")
    with pytest.raises(ConfigError, match="unknown score"):
        read_ranked_variants(["demo"], store.uri, weights={"novelty": 1.0})


@pytest.fixture(scope="module")
def scratch_store(tmp_path_factory):
    yield default_tracking_uri(tmp_path_factory.mktemp("scratch"))  # a new sqlite store takes seconds to set up
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def scratch(scratch_store, request):
    """A fresh experiment of its own for each test, in one shared store."""
    name = re.sub(r"\W", "_", request.node.name)
    return scratch_store, name, ensure_experiment(name, scratch_store)


def test_no_finished_runs_is_an_error_and_unfinished_runs_do_not_count(scratch):
    uri, name, experiment_id = scratch
    with pytest.raises(LeaderboardError, match="no finished variant runs"):
        read_ranked_variants([name], uri)
    with pytest.raises(RuntimeError), variant_run(experiment_id, "k-crash", "crashed"):
        log_metrics({"clarity_mean": 0.9})
        raise RuntimeError("interrupted")
    with variant_run(experiment_id, "k-ok", "finished"):
        log_metrics({"clarity_mean": 0.4})
    assert [entry.variant for entry in read_ranked_variants([name], uri).entries] == ["finished"]


def _run_with_tables(experiment_id: str, tables: dict[str, dict]) -> str:
    with variant_run(experiment_id, json.dumps(sorted(tables)), "broken") as run:
        log_metrics({"clarity_mean": 0.5})
        for name, content in tables.items():
            mlflow.log_dict(content, f"tables/{name}.json")
    return run.run_id


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"per_feature": {"columns": ["feature"], "data": [[1]]}}, "lacks the column\\(s\\) description"),
        ({"per_feature": {"rows": []}}, "not a table written by mlflow.log_table"),
        ({"per_feature": {"columns": ["feature", "description"], "data": [[1, "a", "extra"]]}}, "row 0 does not have"),
        ({"per_feature": {"columns": ["feature", "description"], "data": [["seven", "a"]]}}, "not an integer feature"),
        (
            {"top_examples": {"columns": ["feature", "tokens", "activations"], "data": [[1, ["a", "b"], [0.5]]]}},
            "tokens .* and activations must be lists of the same length",
        ),
        (
            {"top_examples": {"columns": ["feature", "sample_id", "activations"], "data": [[1, 4, [0.5]]]}},
            "tokens \\(in the row, or the sample's in tables/corpus_samples.json\\)",
        ),
    ],
)
def test_malformed_artifacts_name_the_run_and_the_problem(scratch, tmp_path, tables, message):
    uri, _, experiment_id = scratch
    run_id = _run_with_tables(experiment_id, tables)
    with pytest.raises(LeaderboardError, match=message) as raised:
        read_run_artifacts(run_id, uri, tmp_path / "staging")
    assert run_id in str(raised.value)


def test_a_run_without_artifacts_reads_as_empty(scratch, tmp_path):
    uri, _, experiment_id = scratch
    with variant_run(experiment_id, "bare", "bare") as run:
        log_metrics({"clarity_mean": 0.5})
    artifacts = read_run_artifacts(run.run_id, uri, tmp_path / "staging")
    assert (artifacts.features, artifacts.top_examples, artifacts.plots, artifacts.plots_dir) == ([], {}, [], None)


def test_per_feature_records_group_examples_and_ratings(store, tmp_path):
    run_id = store.run_ids[DEMO_VARIANTS[0].name]
    artifacts = read_run_artifacts(run_id, store.uri, tmp_path / "staging")
    assert [record["feature"] for record in artifacts.features] == FEATURES
    assert sorted(artifacts.top_examples) == FEATURES and all(len(v) == 5 for v in artifacts.top_examples.values())
    assert all(len(v) == 12 for v in artifacts.rated_samples.values())
    stage = RATED_FIELDS.index("stage")
    assert {sample[stage] for sample in artifacts.rated_samples[0]} == {"responsiveness", "faithfulness"}
    tokens, activations = (EXAMPLE_FIELDS.index(name) for name in ("tokens", "activations"))
    assert all(len(example[tokens]) == len(example[activations]) == 12 for example in artifacts.top_examples[5])
    record = artifacts.features[3]  # feature 3: no rated-2 samples in the synthetic runs
    assert record["scores"]["responsiveness"] == {"value": None, "reason": "no_rated_2_samples"}
    assert [plot.path for plot in artifacts.plots] == ["radar.png", "score_distributions.png"]
    assert sorted(artifacts.feature_plots) == [0, 1]
    assert artifacts.plots[1].width == 400 and artifacts.plots[1].height == 250  # 4 x 2.5 in at 100 dpi


def test_runs_logged_with_each_text_in_its_rows_read_as_runs_that_name_samples_by_id(scratch, tmp_path):
    """A store's older runs (text, tokens and stage in every row; continuations among the rated samples) give the
    pages the same examples and rated samples as the current layout (texts once, by sample id)."""
    uri, name, _ = scratch
    read = [  # the same synthetic run twice (two experiments: one run per variant and experiment)
        read_run_artifacts(
            log_variant(ensure_experiment(f"{name}-{by_id}", uri), DEMO_VARIANTS[0], FEATURES[:4], samples_by_id=by_id),
            uri,
            tmp_path / str(by_id),
        )
        for by_id in (False, True)
    ]

    def without_ids(records, fields):  # the sample ids differ: the current layout numbers the samples it logs
        at = fields.index("sample_id")
        return {feature: [(*row[:at], *row[at + 1 :]) for row in rows] for feature, rows in records.items()}

    before, now = read
    assert without_ids(before.top_examples, EXAMPLE_FIELDS) == without_ids(now.top_examples, EXAMPLE_FIELDS)
    assert without_ids(before.rated_samples, RATED_FIELDS) == without_ids(now.rated_samples, RATED_FIELDS)
    stage, sample = RATED_FIELDS.index("stage"), RATED_FIELDS.index("sample_id")
    assert now.rated_samples[0][-1][stage] == "faithfulness"
    assert before.rated_samples[0][-1][sample] == now.rated_samples[0][-1][sample]  # a continuation's prompt
    assert {row[stage] for row in now.rated_samples[0]} == {"responsiveness", "faithfulness"}


def test_a_rated_corpus_samples_text_is_logged_once_and_read_back_in_each_of_its_rows(scratch, tmp_path):
    """One corpus sample is rated for many features: its text is in the run's corpus samples, not in each row."""
    rated_by_feature = {0: [(7, "shared text", 1.23456, 2), (8, "only here", 0.1, 0)], 1: [(7, "shared text", 0.4, 1)]}
    for feature, rows in rated_by_feature.items():
        folder = tmp_path / "fade" / "features" / str(feature)
        folder.mkdir(parents=True)
        pd.DataFrame(rows, columns=["sample_id", "text", "activation", "rating"]).assign(round=0).to_csv(
            folder / "natural_ratings.csv", index=False
        )
    rated, texts = rated_samples_table(tmp_path / "fade")
    assert list(rated.columns) == ["feature", "sample_id", "activation", "rating"] and len(rated) == 3
    assert rated["activation"].tolist() == [1.235, 0.1, 0.4]  # shown to 4 significant digits
    samples = corpus_samples_table(texts)
    assert samples[["sample_id", "text"]].to_dict("records") == [
        {"sample_id": 7, "text": "shared text"},
        {"sample_id": 8, "text": "only here"},
    ]
    uri, _, experiment_id = scratch
    with variant_run(experiment_id, "texts-once", "texts-once") as run:
        mlflow.log_table(rated, RATED_SAMPLES_TABLE)
        mlflow.log_table(samples, CORPUS_SAMPLES_TABLE)
    read = read_run_artifacts(run.run_id, uri, tmp_path / "staging").rated_samples
    stage, text, rating = (RATED_FIELDS.index(name) for name in ("stage", "text", "rating"))
    assert [(row[stage], row[text], row[rating]) for row in read[0]] == [
        ("responsiveness", "shared text", 2),
        ("responsiveness", "only here", 0),
    ]
    assert [(row[text], row[rating]) for row in read[1]] == [("shared text", 1)]
