"""FADE draws the per-feature plots of the features a tracked run logs (the first `tracking.plot_features` of the
table) and no others; the scores do not depend on which features are plotted."""

from __future__ import annotations

import pandas as pd
import pytest
from fade_pipeline_fixtures import KEY_ENV, OTHER_WORD, PLANTED_WORD, fade_config, token_detector_sae

from harness.config import SubjectModelConfig
from harness.evaluate import ResultStore, evaluate_descriptions
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer

pytestmark = pytest.mark.slow

PLOTS = {"clarity.png", "ratings.png", "radar.png"}


def test_only_the_logged_features_get_plots_and_scores_are_unchanged(tmp_path):
    sae = token_detector_sae(tmp_path / "sae", load_subject_model(SubjectModelConfig()), [PLANTED_WORD, OTHER_WORD])
    site = {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}}
    descriptions = pd.DataFrame(
        {"feature": [1, 0], "description": [f"mentions '{OTHER_WORD}'", f"mentions '{PLANTED_WORD}'"]}
    )
    results = {}
    with pytest.MonkeyPatch.context() as patch, LoopbackServer() as server:
        patch.setenv(KEY_ENV, "sk-loopback-test")
        for plotted in (1, 2):
            config = fade_config(server.url, tmp_path / "cache", site, faithfulness={"enabled": False})
            config = config.model_copy(
                update={"tracking": config.tracking.model_copy(update={"plot_features": plotted})}
            )
            results[plotted] = evaluate_descriptions(config, descriptions, tmp_path / f"out-{plotted}", progress=False)
    one, both = results[1], results[2]
    assert PLOTS <= set(one.results[1].files) and not PLOTS & set(one.results[0].files)  # the table's first row
    assert all(PLOTS <= set(both.results[feature].files) for feature in (0, 1))
    store = ResultStore(one.output_dir)
    assert not list(store.folder(0).glob("*.png"))
    pd.testing.assert_frame_equal(one.scores, both.scores)
    assert one.scores["clarity"].notna().all()
