"""An interrupted 20-feature evaluation resumes: finished features are not computed again (the rater's
request count shows it) and the results equal those of an uninterrupted run, file for file."""

from __future__ import annotations

import pandas as pd
import pytest
from fade_pipeline_fixtures import KEY_ENV, fade_config, token_detector_sae

from harness.config import SubjectModelConfig
from harness.evaluate import evaluate_descriptions
from harness.evaluate.fade.results import FEATURES_FOLDER, RESULT_FILE
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer

pytestmark = pytest.mark.slow

WORDS = [
    "then", "such", "each", "which", "next", "like", "most", "these", "all", "can",
    "see", "but", "first", "also", "given", "two", "being", "about", "more", "long",
]  # fmt: skip
STOP_AFTER = 7


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed job in the middle of a run."""


def _files(root):
    folder = root / FEATURES_FOLDER
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_interrupted_evaluation_resumes_without_recomputing_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    loaded_model = load_subject_model(SubjectModelConfig())
    sae = token_detector_sae(tmp_path / "sae", loaded_model, WORDS)
    site = {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}}
    # Every fifth latent gets its own word (it passes the gate, so steering runs), the others a neighbour's.
    own_or_neighbour = [WORDS[i if i % 5 == 0 else (i + 1) % len(WORDS)] for i in range(len(WORDS))]
    descriptions = pd.DataFrame(
        {"feature": range(len(WORDS)), "description": [f"mentions '{w}'" for w in own_or_neighbour]}
    )
    with LoopbackServer() as server:
        # Short prompts and few steps keep the steered generation cheap; the scores are not the point here.
        config = fade_config(
            server.url,
            tmp_path / "cache",
            site,
            max_length=32,
            clarity_llm_calls=2,
            faithfulness={"num_samples": 3, "generation_length": 4},
        )
        whole = evaluate_descriptions(config, descriptions, tmp_path / "whole", progress=False)
        requests_whole = server.requests

        server.reset_counts()
        done = []

        def stop_after_some(result):
            done.append(result.feature)
            if len(done) == STOP_AFTER:
                raise Interrupted

        with pytest.raises(Interrupted):
            evaluate_descriptions(
                config, descriptions, tmp_path / "resumed", progress=False, on_feature_done=stop_after_some
            )
        finished = sorted(
            int(path.parent.name) for path in (tmp_path / "resumed" / FEATURES_FOLDER).glob(f"*/{RESULT_FILE}")
        )
        assert set(done) <= set(finished) and STOP_AFTER <= len(finished) < len(WORDS)

        server.reset_counts()
        resumed = evaluate_descriptions(config, descriptions, tmp_path / "resumed", progress=False)
        requests_resumed = server.requests

    assert sorted(resumed.reused) == finished
    assert sorted(resumed.computed) == sorted(set(range(len(WORDS))) - set(finished))
    assert requests_resumed == sum(resumed.results[feature].llm_requests for feature in resumed.computed)
    assert requests_whole == sum(result.llm_requests for result in whole.results.values()) > requests_resumed
    assert any(result.scores.faithfulness.defined for result in whole.results.values())  # steering ran too

    assert {f: r.to_dict() for f, r in resumed.results.items()} == {f: r.to_dict() for f, r in whole.results.items()}
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")
    pd.testing.assert_frame_equal(resumed.scores, whole.scores)

    # A finished output folder needs no rater at all (the server is gone: any call would fail).
    idle = evaluate_descriptions(config, descriptions, tmp_path / "whole", progress=False)
    assert not idle.computed and sorted(idle.reused) == list(range(len(WORDS)))
