"""The clarity floor on planted features: a feature that reacts to the generator's style scores high Clarity for
any description but not above its floor; a token feature with its true description beats its floor clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fade_pipeline_fixtures import ABSENT_WORD, KEY_ENV, PLANTED_WORD, UNRELATED_WORD, fade_config, token_detector_sae

from harness.config import ClarityFloorConfig, SubjectModelConfig
from harness.evaluate import ResultStore, evaluate_descriptions
from harness.evaluate.fade._clarity_floor import MIN_SPREAD, clarity_floor
from harness.evaluate.scores import Score
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer
from harness.testing.responders import FadeResponder, _concept_of

STYLE_WORD = UNRELATED_WORD  # "each": in 3 of the 120 natural samples, and opening every sample the generator writes


class StyleTicGenerator(FadeResponder):
    """The scripted rater, but its generator opens every sample with the same word, whatever the concept;
    it notes each concept it writes for."""

    def __init__(self) -> None:
        self.written_for: list[str] = []

    def generate(self, user: str) -> str:
        self.written_for.append(_concept_of(user))
        samples = json.loads(super().generate(user))
        return json.dumps([f"{STYLE_WORD.capitalize()} time, {sample[0].lower()}{sample[1:]}" for sample in samples])


def test_the_floor_is_the_unrelated_concepts_clarity_and_says_how_far_above_it_clarity_is():
    rng = np.random.default_rng(0)
    natural = rng.normal(size=300)
    unrelated = {"a": rng.normal(size=40), "b": rng.normal(size=40) + 0.3, "c": rng.normal(size=40) - 0.3}
    floor = clarity_floor(Score(value=0.9), natural, unrelated, beats_at_z=2.0)
    values = [score.value for score in floor.by_concept.values()]
    assert floor.mean == pytest.approx(np.mean(values)) and floor.spread == pytest.approx(np.std(values, ddof=1))
    assert floor.above == pytest.approx(0.9 - floor.mean) and floor.z == pytest.approx(floor.above / floor.spread)
    assert floor.beats is True
    assert clarity_floor(Score(value=floor.mean + floor.spread), natural, unrelated, beats_at_z=2.0).beats is False
    # Identical floor values: the spread is taken as MIN_SPREAD, so a tiny difference is not significant.
    same = {"a": np.zeros(10), "b": np.zeros(10)}
    flat = clarity_floor(Score(value=0.0), np.ones(20), same, beats_at_z=2.0)
    assert flat.spread == 0.0 and flat.beats is False
    assert clarity_floor(Score(value=flat.mean + 3 * MIN_SPREAD), np.ones(20), same, beats_at_z=2.0).beats is True
    # Undefined Clarity, or fewer than two defined floor values: no verdict.
    assert clarity_floor(Score.undefined("no_synthetic_samples"), natural, unrelated, beats_at_z=2.0).beats is None
    lonely = clarity_floor(Score(value=0.9), natural, {"a": unrelated["a"], "b": np.zeros(0)}, beats_at_z=2.0)
    assert lonely.mean is None and lonely.beats is None


@pytest.mark.slow
def test_a_style_feature_does_not_beat_its_floor_and_a_true_description_does(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    loaded_model = load_subject_model(SubjectModelConfig())
    sae = token_detector_sae(tmp_path / "sae", loaded_model, [STYLE_WORD, PLANTED_WORD])
    site = {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}}
    # Feature 0 fires on the generator's tic, so any description "works"; feature 1 on its described word.
    descriptions = pd.DataFrame(
        {"feature": [0, 1], "description": [f"mentions '{ABSENT_WORD}'", f"mentions '{PLANTED_WORD}'"]}
    )
    responder = StyleTicGenerator()
    concepts = ClarityFloorConfig().concepts
    with LoopbackServer(responder=responder) as server:
        config = fade_config(
            server.url, tmp_path / "cache", site, clarity_floor={"enabled": True}, faithfulness={"enabled": False}
        )
        result = evaluate_descriptions(config, descriptions, tmp_path / "out", progress=False)
    style, token = result.results[0], result.results[1]
    assert style.scores.clarity.value >= 0.9  # high Clarity for a description that has nothing to do with it
    assert abs(style.clarity_floor.above) <= 0.1 and style.clarity_floor.beats is False
    assert token.scores.clarity.value >= 0.9
    assert token.clarity_floor.above >= 0.8 and token.clarity_floor.beats is True
    assert set(style.clarity_floor.by_concept) == set(concepts)
    # The unrelated concepts' samples were written once for both features (3 calls each), not per feature.
    written = pd.Series(responder.written_for).value_counts()
    assert all(written[concept] == config.fade.clarity_llm_calls for concept in concepts)
    assert result.floor_cost["requests"] == len(concepts) * config.fade.clarity_llm_calls
    table = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert table.set_index("feature")["clarity_beats_floor"].to_dict() == {0: False, 1: True}
    summary = ResultStore(tmp_path / "out").root / "summary.json"
    assert '"features_beating_floor": 1' in summary.read_text()
