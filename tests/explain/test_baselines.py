"""The no-LLM baselines, the descriptions table, and records built from an ActivationSet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.activations.types import ActivationSet
from harness.config import ExplainConfig
from harness.errors import EvaluationError
from harness.explain import (
    Description,
    FeatureRecord,
    build_feature_records,
    derangement,
    descriptions_from_table,
    descriptions_table,
    generate_descriptions,
    import_descriptions,
    settings_hash,
    shuffle_table,
    truncate_for_display,
    validate_descriptions,
)
from harness.explain._top_tokens import top_tokens


def test_top_tokens_ranks_by_peak_count_then_activation():
    tokens = [" def", "def", " class", " class", " import", "\n"]
    activations = [1.0, 1.0, 5.0, 5.0, 9.0, 0.5]
    assert top_tokens(tokens, activations, 3) == ["class", "def", "import"]
    assert top_tokens(["\n", "\n"], [1.0, 1.0], 5) == ["\n"]


def test_top_tokens_explainer_names_the_planted_token(make_planted_record):
    records = [make_planted_record(feature, token) for feature, token in [(3, "zebra"), (9, "quokka")]]
    config = ExplainConfig(explainer="top-tokens")
    table = generate_descriptions(records, config)
    assert table["description"].tolist() == ['"zebra"', '"quokka"']
    assert table["example_ids"].tolist() == [[e.sample_id for e in r.top_examples[:10]] for r in records]
    assert set(table["settings_hash"]) == {settings_hash(config)} and (table["cost_usd"] == 0).all()


def test_a_silent_feature_gets_an_error_row_not_a_crash(make_example, make_planted_record):
    silent = FeatureRecord(feature=2, top_examples=(make_example(1, ["a", "b"], [0.0, 0.0]),))
    table = generate_descriptions([make_planted_record(1, "zebra"), silent], ExplainConfig(explainer="top-tokens"))
    assert table["description"].tolist() == ['"zebra"', None]
    assert table.loc[1, "error"] == "the feature has no activating examples"


def test_derangement_moves_every_item_and_is_seeded():
    for size in (2, 3, 10, 101):
        for seed in range(5):
            permutation = derangement(size, seed)
            assert sorted(permutation.tolist()) == list(range(size))
            assert not np.any(permutation == np.arange(size))
    assert derangement(2, 0).tolist() == [1, 0]
    assert derangement(50, 1).tolist() == derangement(50, 1).tolist() != derangement(50, 2).tolist()
    with pytest.raises(EvaluationError, match="at least 2"):
        derangement(1, 0)


def test_shuffled_control_gives_each_feature_another_features_description(make_planted_record):
    planted = ["ant", "bee", "cat", "dog", "eel", "fox"]
    records = [make_planted_record(feature, token) for feature, token in enumerate(planted)]
    base = generate_descriptions(records, ExplainConfig(explainer="top-tokens"))
    config = ExplainConfig.model_validate({"explainer": "shuffled", "shuffled": {"base": "top-tokens", "seed": 4}})
    shuffled = generate_descriptions(records, config)
    assert sorted(shuffled["description"]) == sorted(base["description"])
    assert (shuffled["description"] != base["description"]).all()
    # each description travels with its provenance (the examples it was written from)
    origin = dict(zip(base["description"], base["example_ids"]))
    assert all(origin[text] == ids for text, ids in zip(shuffled["description"], shuffled["example_ids"]))
    assert set(shuffled["explainer"]) == {"shuffled"}
    assert shuffled["settings_hash"].iloc[0] != base["settings_hash"].iloc[0]
    again = generate_descriptions(records, config)
    assert again["description"].tolist() == shuffled["description"].tolist()


def test_shuffle_table_works_on_imports_and_leaves_failed_rows_alone(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("feature,description\n1,one\n2,two\n3,three\n")
    imported, _ = import_descriptions(path)
    failed = descriptions_table(
        [*descriptions_from_table(imported), Description(4, None, error="no examples")], "import:csv", "h"
    )
    shuffled = shuffle_table(failed, seed=0)
    assert shuffled.loc[3, "description"] is None and shuffled.loc[3, "error"] == "no examples"
    assert sorted(shuffled["description"][:3]) == ["one", "three", "two"]
    assert all(shuffled["description"][:3] != imported["description"])


def test_the_table_schema_rejects_bad_tables():
    table = descriptions_table([Description(1, "x", (5, 6)), Description(2, None, error="why")], "llm", "h")
    assert list(table.columns[:4]) == ["feature", "description", "explainer", "settings_hash"]
    for change, expected in [
        (lambda t: t.assign(feature=[1, 1]), "feature"),
        (lambda t: t.assign(error=[None, None]), "must say why"),
        (lambda t: t.assign(example_ids=[[1], "1,2"]), "sample ids"),
        (lambda t: t.assign(cost_usd=[-1.0, 0.0]), "cost_usd"),
        (lambda t: t.drop(columns="settings_hash"), "settings_hash"),
    ]:
        with pytest.raises(EvaluationError, match=expected):
            validate_descriptions(change(table.copy()))


def test_long_descriptions_are_cut_only_for_display():
    text = "word " * 1000
    table = descriptions_table([Description(0, text.strip())], "llm", "h")
    assert table.loc[0, "description"] == text.strip()
    shown = truncate_for_display(table.loc[0, "description"], 50)
    assert len(shown) <= 50 and shown.endswith("…")
    assert truncate_for_display("short") == "short" and truncate_for_display(None) == ""


def test_records_come_from_an_activation_set_with_optional_pools(make_example):
    top = {5: [make_example(1, ["a"], [3.0])], 9: [make_example(2, ["b"], [1.0])]}
    activation_set = ActivationSet(
        feature_ids=np.array([9, 5]),
        sample_ids=np.array([1, 2]),
        per_sample=np.zeros((2, 2), dtype=np.float32),
        top_examples=top,
    )
    pool_example = make_example(7, ["c"], [0.0])
    records = build_feature_records(activation_set, pools={5: [pool_example]})
    assert [record.feature for record in records] == [9, 5]
    assert records[1].top_examples == tuple(top[5]) and records[1].pool == (pool_example,)
    assert records[0].pool == ()


def test_repeated_features_are_refused(make_planted_record):
    record = make_planted_record(1, "zebra")
    with pytest.raises(EvaluationError, match="more than once"):
        generate_descriptions([record, record], ExplainConfig(explainer="top-tokens"))


def test_table_survives_a_parquet_round_trip(tmp_path, make_example, make_planted_record):
    silent = FeatureRecord(feature=2, top_examples=(make_example(1, ["a"], [0.0]),))
    table = generate_descriptions([make_planted_record(1, "zebra"), silent], ExplainConfig(explainer="top-tokens"))
    table.to_parquet(tmp_path / "descriptions.parquet")
    restored = validate_descriptions(pd.read_parquet(tmp_path / "descriptions.parquet"))
    assert descriptions_from_table(restored) == descriptions_from_table(table)
