"""Per-feature result files, plots, description files and the checks on the descriptions table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.config import HarnessConfig
from harness.errors import ConfigError, EvaluationError
from harness.evaluate import FeatureResult, ResultStore, evaluate_descriptions, read_descriptions
from harness.evaluate.fade import _plots as plots
from harness.evaluate.fade.results import RESULT_FILE
from harness.evaluate.scores import FeatureScores, Score

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(faithfulness: Score | None = None) -> FeatureScores:
    return FeatureScores(
        clarity=Score.of(0.9),
        responsiveness=Score.of(0.8),
        purity=Score.undefined("no_rated_2_samples"),
        faithfulness=faithfulness or Score.undefined("below_gini_threshold"),
        counts={"synthetic": 10, "rated_2": 0},
    )


def result(feature: int = 3, key: str = "k1") -> FeatureResult:
    return FeatureResult(feature=feature, description="mentions 'then'", key=key, scores=scores(), llm_requests=11)


def test_a_saved_result_is_found_again_only_under_its_key(tmp_path):
    store = ResultStore(tmp_path)
    table = pd.DataFrame({"text": ["a, b", "line\nbreak"], "activation": [0.5, -1.25]})
    saved = store.save(result(), {"synthetic": table}, {"radar": b"png-bytes"})
    assert saved.files == ["radar.png", "synthetic.csv"]
    assert store.load(3, "k1") == saved
    assert store.load(3, "other settings") is None and store.load(4, "k1") is None
    pd.testing.assert_frame_equal(store.table(3, "synthetic"), table)
    assert not list(store.folder(3).glob(".*"))  # no temporary files left behind


def test_a_result_whose_llm_calls_failed_is_written_but_never_reused(tmp_path):
    """Its scores are no result (issue #30): the next run computes the feature again; results stored before
    Reason.LLM_FAILED existed, with data-like reasons and llm_failures > 0, are not reused either."""
    store = ResultStore(tmp_path)
    failed = result().model_copy(update={"llm_failures": 2, "llm_error": "LLMError: HTTP 500"})
    store.save(failed, {}, {})
    assert json.loads((store.folder(3) / RESULT_FILE).read_text())["llm_error"] == "LLMError: HTTP 500"
    assert store.load(3, "k1") is None
    table, summary = store.write_run([failed, result(feature=4)], {})
    assert table["llm_failures"].tolist() == [2, 0] and summary["llm_failed_features"] == [3]


def test_saving_again_replaces_the_files_of_the_older_result(tmp_path):
    store = ResultStore(tmp_path)
    store.save(
        result(key="old"), {"synthetic": pd.DataFrame({"a": [1]}), "continuations": pd.DataFrame({"b": [2]})}, {}
    )
    store.save(result(key="new"), {"synthetic": pd.DataFrame({"a": [3]})}, {})
    assert sorted(path.name for path in store.folder(3).iterdir()) == [RESULT_FILE, "synthetic.csv"]
    assert store.load(3, "old") is None and store.table(3, "synthetic")["a"].tolist() == [3]


def test_an_unreadable_result_file_says_how_to_recover(tmp_path):
    store = ResultStore(tmp_path)
    store.folder(5).mkdir(parents=True)
    (store.folder(5) / RESULT_FILE).write_text('{"feature": 5, "scores": ')
    with pytest.raises(EvaluationError, match=r"delete it to compute feature 5 again"):
        store.load(5, "k")


def test_run_files_list_every_feature_with_reasons_and_summaries(tmp_path):
    store = ResultStore(tmp_path)
    computed = [result(3), result(4).model_copy(update={"scores": scores(Score.of(0.25))})]
    table, summary = store.write_run(computed, skipped={9: "no_description"})
    written = pd.read_csv(tmp_path / "scores.csv")
    assert written["feature"].tolist() == [3, 4] and written["purity_reason"].tolist() == ["no_rated_2_samples"] * 2
    assert written["faithfulness"].isna().tolist() == [True, False]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary and summary["skipped"] == {"9": "no_description"}
    assert summary["scores"]["faithfulness"]["n_defined"] == 1 and summary["scores"]["faithfulness"]["mean"] == 0.25
    assert summary["scores"]["purity"]["mean"] is None and summary["llm_requests"] == 22


@pytest.mark.parametrize("synthetic", [np.zeros(0), np.array([0.2, 0.4])])
def test_plots_render_also_for_empty_and_undefined_data(synthetic):
    natural = np.zeros(50, dtype=np.float32)  # a dead feature: every activation equal
    images = [
        plots.clarity_plot(synthetic, natural, scores()),
        plots.rating_plot(np.zeros(0), np.zeros(0, dtype=int), scores()),
        plots.faithfulness_plot(
            {0.0: {0: 1.0, 1: 0.0, 2: 0.0}, 10.0: {0: 0.25, 1: 0.0, 2: 0.75}}, scores(Score.of(0.75))
        ),
        plots.radar_plot(scores(), "feature 3"),
    ]
    assert all(image.startswith(PNG_MAGIC) for image in images)


def test_description_files_of_every_supported_kind(tmp_path):
    (tmp_path / "d.csv").write_text('feature,description\n2,"mentions ""then"""\n7,loops\n')
    (tmp_path / "records.json").write_text(
        json.dumps([{"feature": 2, "description": "a"}, {"feature": 7, "description": "b"}])
    )
    (tmp_path / "records.jsonl").write_text('{"feature": 2, "description": "a"}\n{"feature": 7, "description": "b"}\n')
    (tmp_path / "fade.json").write_text(json.dumps({"2": {"concept": "a", "clarity": 0.5}, "7": {"concept": "b"}}))
    read_descriptions(tmp_path / "records.json").to_parquet(tmp_path / "table.parquet")
    assert read_descriptions(tmp_path / "d.csv")["description"].tolist() == ['mentions "then"', "loops"]
    for name in ("records.json", "records.jsonl", "fade.json", "table.parquet"):
        table = read_descriptions(tmp_path / name)
        assert table[["feature", "description"]].values.tolist() == [[2, "a"], [7, "b"]], name
    assert read_descriptions(tmp_path / "fade.json")["published_clarity"].tolist()[0] == 0.5


def test_bad_description_files_fail_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_descriptions(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("feature,text\n1,a\n")
    with pytest.raises(EvaluationError, match="lacks the column"):
        read_descriptions(tmp_path / "bad.csv", format="csv")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"feature": [1]}), "lacks the column"),
        (pd.DataFrame({"feature": [1, 1], "description": ["a", "b"]}), "more than once"),
        (pd.DataFrame({"feature": [-1], "description": ["a"]}), "not non-negative integers"),
        (pd.DataFrame({"feature": ["x"], "description": ["a"]}), "not non-negative integers"),
        (pd.DataFrame({"feature": [1], "description": ["  "]}), "not non-empty texts"),
    ],
)
def test_a_bad_descriptions_table_is_rejected_before_any_work(tmp_path, table, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate_descriptions(HarnessConfig(), table, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
