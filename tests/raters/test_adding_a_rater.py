"""docs/architecture.md's "A rater", followed as written: its example rater and registration are read from the
doc, so the doc cannot drift from what works. Named in a config's `fade.rater.model`, the rater rates natural
samples for FADE's Responsiveness and Purity and judges detection, with no LLM call and no harness file changed;
its settings (`fade.rater_settings.keywords`) are checked at load and part of the run identity only when set, and
its label is the tracked run's `rater` param."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scorers"))

from scorer_records import TOPICS, planted_record, shuffled_descriptions, true_descriptions  # noqa: E402
from test_adding_a_scorer import _block  # noqa: E402  (the doc's code blocks, read one way)

from harness.config import ScorersConfig, identity_payload, parse_config, result_fingerprint  # noqa: E402
from harness.errors import ConfigError, EvaluationError  # noqa: E402
from harness.evaluate.fade._calls import FeatureCalls, RaterBackend  # noqa: E402
from harness.evaluate.fade._responsiveness import rate_natural_samples, score_responsiveness  # noqa: E402
from harness.evaluate.fade.pipeline import clarity_writer  # noqa: E402
from harness.evaluate.scorers import run_scorers  # noqa: E402
from harness.llm import LLMClient  # noqa: E402
from harness.raters import Capability, _base, build_rater, check_rater, rater_settings  # noqa: E402
from harness.registry import RATERS  # noqa: E402
from harness.track.runs import log_params, variant_run  # noqa: E402
from harness.track.store import default_tracking_uri, ensure_experiment  # noqa: E402
from harness.track.variant import variant_params  # noqa: E402

MODEL = "keywords/plain"
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "holidays"]
BAKING = [f"We bake bread on {day}." for day in DAYS]
OTHER = [f"The {thing} left the station on {day}." for thing in ("train", "bus", "ferry") for day in DAYS]
CORPUS = BAKING + OTHER
LABEL = "keywords/plain (keyword proxy for an LLM judge)"


def config(**fade):
    """A config naming the documented rater (registered first), with an LLM to write Clarity's samples."""
    base = {"rater": {"model": MODEL}, "generator": {"model": "local/smollm2-135m"}, "num_samples": len(CORPUS)}
    return parse_config({"fade": {**base, **fade}})


@pytest.fixture
def documented_rater(tmp_path, monkeypatch):
    """The doc's my_raters.py in an importable folder, registered by the doc's own line, and a config naming it;
    the registry, the built raters and sys.modules are restored afterwards, so no other test sees the rater."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "my_raters.py").write_text(_block("# my_raters.py"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(RATERS, "_targets", dict(RATERS._targets))
    monkeypatch.setattr(RATERS, "_names_by_target", dict(RATERS._names_by_target))
    monkeypatch.setattr(_base, "_built", {})
    exec(_block("RATERS.add("), {})
    yield config().fade
    sys.modules.pop("my_raters", None)


def test_the_documented_rater_is_built_once_from_the_config_and_is_named_a_proxy(documented_rater, tmp_path):
    fade = documented_rater
    check_rater(fade, tmp_path)  # its own pre-flight checks: nothing to fail
    rater = build_rater(fade, tmp_path, CORPUS, progress=False)
    assert type(rater).__name__ == "KeywordRater" and type(rater).__module__ == "my_raters"
    assert build_rater(fade, tmp_path, CORPUS, progress=False) is rater  # FADE and the scorers share it
    assert rater.label == LABEL
    assert [rater.supports(capability) for capability in Capability] == [False, True, True, False]
    with pytest.raises(EvaluationError, match="cannot be asked 'prompts'"):
        rater.chat  # noqa: B018


def test_fade_rates_the_natural_samples_with_it_and_asks_no_llm(documented_rater, tmp_path):
    fade = documented_rater
    rater = build_rater(fade, tmp_path, CORPUS, progress=False)
    generator = LLMClient(fade.generation_llm, tmp_path, progress=False)
    activations = np.array([5.0 + 0.1 * i for i in range(len(BAKING))] + [0.0] * len(OTHER))
    sample_ids = np.arange(100, 100 + len(CORPUS))

    def rated(description: str):
        calls = FeatureCalls(RaterBackend(generator, rater), feature=0)
        rng = np.random.default_rng(0)
        samples = asyncio.run(rate_natural_samples(calls, description, activations, CORPUS, sample_ids, fade, rng))
        assert calls.requests == 0
        return samples

    true = rated("bake bread")
    ratings = dict(zip(true.positions.tolist(), true.ratings.tolist()))
    assert sorted(ratings) == list(range(len(CORPUS)))
    assert all(ratings[position] == (2 if position < len(BAKING) else 0) for position in ratings)
    scores = score_responsiveness(activations, true)
    assert scores.average_precision.value == pytest.approx(1.0)  # Purity: every rated-2 sample is the most active
    half = rated("bake cakes")  # half the words: rated 1 where the bread is
    assert sorted(set(half.ratings.tolist())) == [0, 1]
    generator.close()


def test_its_settings_are_checked_at_load_and_part_of_the_run_identity_only_when_set(documented_rater, tmp_path):
    assert rater_settings(documented_rater).share == 0.5  # the default, where the config gives none
    for given, problem in (
        ({"share": 2}, "fade.rater_settings.keywords.share: Input should be less than or equal to 1"),
        ({"shares": 0.6}, "fade.rater_settings.keywords.shares: unknown key"),
    ):
        with pytest.raises(ConfigError, match=problem):
            config(rater_settings={"keywords": given})
    with pytest.raises(ConfigError, match=r"fade.rater_settings.keyword: unknown rater 'keyword'. Did you mean"):
        config(rater_settings={"keyword": {"share": 0.6}})
    stricter = config(rater_settings={"keywords": {"share": 0.6}})
    assert rater_settings(stricter.fade).share == 0.6
    assert "rater_settings" not in identity_payload(config())["fade"]
    assert identity_payload(stricter)["fade"]["rater_settings"] == {"keywords": {"share": 0.6}}
    assert result_fingerprint(stricter) != result_fingerprint(config())
    rater = build_rater(stricter.fade, tmp_path, CORPUS, progress=False)
    assert rater is not build_rater(documented_rater, tmp_path, CORPUS, progress=False)  # its identity holds them
    assert rater.rate("bake cakes", BAKING[:1]) == [0]  # half the words: rated 1 at the default share, 0 here


def test_its_label_is_the_tracked_runs_rater_param(documented_rater, tmp_path):
    uri = default_tracking_uri(tmp_path / "mlruns")
    with variant_run(ensure_experiment("keywords", uri), "key", "keywords") as run:
        log_params(variant_params(config()))
    mlflow.set_tracking_uri(None)
    params = MlflowClient(uri).get_run(run.run_id).data.params
    assert (params["rater"], params["fade.rater.model"]) == (LABEL, MODEL)


def test_without_fade_generator_fade_says_the_rater_writes_no_text(documented_rater, tmp_path):
    rater = build_rater(documented_rater, tmp_path, CORPUS, progress=False)
    alone = documented_rater.model_copy(update={"generator": None})
    with pytest.raises(ConfigError, match=r"fade.rater 'keywords/plain \(keyword proxy .*\)' writes no text"):
        clarity_writer(alone, rater, tmp_path)
    writer = clarity_writer(documented_rater, rater, tmp_path)
    assert writer.config.model == "local/smollm2-135m"
    writer.close()


def test_detection_judges_with_it_and_the_scorers_it_cannot_serve_say_why(documented_rater, tmp_path):
    records = [planted_record(feature) for feature in range(len(TOPICS))]
    features = [record.feature for record in records]
    rater = build_rater(documented_rater, tmp_path, CORPUS, progress=False)
    config = ScorersConfig(enabled=["detection", "fuzzing", "intruder", "simulation"])
    true = run_scorers(records, true_descriptions(features), config, rater, progress=False)
    shuffled = run_scorers(records, shuffled_descriptions(features), config, rater, progress=False)
    assert true["detection_reason"].isna().all() and (true["detection_unanswered"] == 0).all()
    # Of the 10 activating examples shown, one ("Have you ever seen a dog up close?") lacks "the": 2 words of
    # the description's 3 in every other one, at most 1 in a non-activating one: balanced accuracy (0.9 + 1) / 2.
    assert np.allclose(true["detection"], 0.95) and (true["detection_auroc"] > 0.9).all()
    assert (shuffled["detection"] < 0.5).all()
    for name, reason in (
        ("fuzzing", "rater_sees_no_highlights"),
        ("intruder", "rater_reads_no_prompt"),
        ("simulation", "rater_predicts_no_token_activations"),
    ):
        assert true[name].isna().all() and (true[f"{name}_reason"] == reason).all(), name


def test_the_doc_says_how_many_files_it_takes_and_the_example_is_one(documented_rater, tmp_path):
    assert sorted(path.name for path in (tmp_path / "plugin").glob("*.py")) == ["my_raters.py"]
    assert "1 file (`my_raters.py`)" in (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
