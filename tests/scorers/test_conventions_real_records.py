"""The scorers stage with the delphi convention and the saebench scorer on the real pipeline: SmolLM2, a planted
SAE latent firing exactly on 'then' (tests/evaluate/fade_pipeline_fixtures.py), the loopback rater."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))

from fade_pipeline_fixtures import OTHER_WORD, PLANTED_WORD, token_detector_sae  # noqa: E402

from harness.config import SubjectModelConfig, parse_config  # noqa: E402
from harness.model import load_subject_model  # noqa: E402
from harness.stages import SharedStages, score_with_other_scorers  # noqa: E402
from harness.testing.loopback import LoopbackServer  # noqa: E402
from harness.testing.responders import FadeResponder  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_stage_scores_delphis_windows_and_a_true_description_beats_a_swapped_one(tmp_path):
    sae = token_detector_sae(tmp_path / "sae", load_subject_model(SubjectModelConfig()), [PLANTED_WORD, OTHER_WORD])
    with LoopbackServer(FadeResponder()) as server:
        config = parse_config(
            {
                "corpus": {"num_samples": 120},
                "site": {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}},
                "activations": {"max_length": 128, "cache_dir": str(tmp_path / "cache")},
                "fade": {"rater": {"model": "openai/scripted", "api_base": server.url}},
                "scorers": {
                    "enabled": ["detection", "fuzzing", "saebench"],
                    "convention": "delphi",
                    # 'then' is in 5 of the 120 samples: one rank slice, a low minimum
                    "delphi": {"min_examples": 3, "n_examples_test": 5, "n_quantiles": 1},
                },
            }
        )
        shared = SharedStages(progress=False)
        true = pd.DataFrame({"feature": [0], "description": [f"the word '{PLANTED_WORD}'"]})
        swapped = pd.DataFrame({"feature": [0], "description": [f"the word '{OTHER_WORD}'"]})
        right = score_with_other_scorers(config, true, shared).iloc[0]
        wrong = score_with_other_scorers(config, swapped, shared).iloc[0]
    windows = shared.delphi_windows(config)[0]
    assert len(windows.test) == min(5, windows.num_active) and len(windows.not_active) == 50
    assert right["detection"] == 1.0 and right["fuzzing"] == 1.0
    assert right["detection_judged"] + right["detection_unanswered"] == len(windows.test) + 50
    assert wrong["detection"] < 1.0 and wrong["fuzzing"] < 1.0
    # a latent active on a handful of tokens leaves nothing below SAEBench's top examples: skipped, as SAEBench does
    assert right["saebench_reason"] == "too_few_activating_examples"
