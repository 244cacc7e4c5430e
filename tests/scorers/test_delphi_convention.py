"""The delphi convention (scorers.convention: delphi) against eai-delphi 0.1.3's own rules.

The expected values were computed by running delphi 0.1.3's functions themselves (split_quantiles in
delphi/latents/samplers.py, the randint of random_non_activating_windows in delphi/latents/constructors.py,
_prepare_text in delphi/scorers/classifier/sample.py) on the same inputs; eai-delphi's modules do not import
without faiss and sentence-transformers, so they are not called here. Each constructed feature is one where
delphi's rules and ours (docs/scorers/detection.md, fuzzing.md) give different answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from harness.activations._windows import inactive_picks, nth_missing, slice_ranks, window_maxima
from harness.activations.types import ActivatingExample, WindowSample
from harness.config import HarnessConfig, LLMConfig, ScorersConfig, result_fingerprint
from harness.evaluate.scorers import run_scorers
from harness.evaluate.scorers._delphi import (
    DEFAULT_MESSAGE,
    Confusion,
    correct_marks,
    delphi_messages,
    detection_samples,
    fuzzing_samples,
    highlighted,
    n_incorrect,
    parse_answer,
    pooled_balanced_accuracy,
    shuffled_batches,
    wrong_marks,
)
from harness.explain import FeatureRecord
from harness.llm import LLMClient
from harness.stages import pooled_metrics
from harness.testing.loopback import LoopbackServer
from harness.testing.responders import FadeResponder


def window(tokens: list[str], values: list[float], sample_id: int = 0) -> ActivatingExample:
    activations = np.asarray(values, dtype=np.float32)
    peak = int(np.argmax(activations))
    return ActivatingExample(sample_id, "".join(tokens), tokens, activations, float(activations[peak]), peak)


# --- sampling (delphi/latents/samplers.py:26-54, constructors.py:643-683) -------------------------------------------


def test_test_ranks_are_delphis_draws_from_equal_rank_slices():
    # split_quantiles(examples, 10, 50) on 200 ranked examples (samplers.py:32-52), run in delphi 0.1.3
    expected = [4, 7, 0, 14, 5, 23, 31, 22, 27, 28, 41, 50, 45, 53, 59, 78, 60, 68, 69, 73, 86, 85, 83, 96, 81]
    expected += [110, 119, 108, 105, 112, 129, 136, 124, 128, 138, 145, 153, 141, 150, 157, 173, 168, 176, 169, 179]
    expected += [192, 185, 189, 191, 199]
    chosen = slice_ranks(200, 50, 10)
    assert [rank for rank, _ in chosen] == expected
    assert [part for _, part in chosen] == [part for part in range(10) for _ in range(5)]


def test_the_lowest_ranks_past_the_last_full_slice_are_never_drawn():
    # 257 examples: slices of 257 // 10 = 25 ranks, so ranks 250-256 are never drawn (samplers.py:34,39)
    chosen = slice_ranks(257, 50, 10)
    assert [rank for rank, _ in chosen][-5:] == [234, 249, 245, 241, 229]
    assert max(rank for rank, _ in chosen) < 250


def test_inactive_windows_are_drawn_with_replacement_and_none_when_too_few():
    # torch.manual_seed(42); torch.randint(0, 60, (50,)) (constructors.py:661-674), run in delphi 0.1.3
    picks = inactive_picks(60, 50)
    assert picks[:12] == [42, 47, 16, 34, 6, 35, 40, 44, 10, 53, 58, 34]
    assert len(set(picks)) < len(picks)  # window 34 comes twice
    assert inactive_picks(49, 50) == []  # fewer inactive windows than wanted: none (constructors.py:667-669)


def test_nth_missing_counts_the_inactive_windows_in_corpus_order():
    active = np.array([1, 2, 5])  # windows 0, 3, 4, 6, 7 ... are inactive
    assert nth_missing(active, np.array([0, 1, 2, 3, 4])).tolist() == [0, 3, 4, 6, 7]


def test_window_maxima_ignore_zeros_and_mark_silent_windows():
    import torch

    token_acts = torch.tensor([[[0.0], [-2.0], [0.0], [3.0], [0.0]]])  # one sample, 5 tokens, 1 feature
    maxima = window_maxima(token_acts, 2)  # windows [0,-2], [0,3], [0]
    assert maxima[0, :, 0].tolist() == [-2.0, 3.0, float("-inf")]


# --- rendering, highlighting, wrong tokens (delphi/scorers/classifier/sample.py, fuzz.py) ---------------------------


def test_detection_shows_the_raw_text_with_its_line_breaks():
    windows = WindowSample(200, 200, test=(window(["Notes", ":\n", "dog"], [0, 0, 1]),), test_slices=(0,))
    assert detection_samples(windows)[0].text == "Notes:\ndog"  # sample.py:516-520; ours writes "\\ndog"


def test_correct_highlights_use_the_examples_own_peak_with_whitespace_inside_the_marks():
    # a weak test window (own peak 1.0): ours would compare with 0.3 x the feature's peak; delphi with 0.3 x 1.0
    example = window(["a", " b", " c", " d", "\ne"], [0.0, 1.0, 0.2, 0.35, 0.0])
    assert highlighted(example.tokens, correct_marks(example.activations)) == "a<< b>> c<< d>>\ne"  # from delphi


@pytest.mark.parametrize(
    ("length", "count", "expected"),
    [
        (32, 3, {24, 30, 31}),  # position 32 - 32 // 4 always, then random.sample after seed 22 (sample.py:547-569)
        (32, 1, {24}),
        (10, 4, {0, 2, 3, 8}),
        (7, 2, {1, 6}),
    ],
)
def test_wrong_tokens_land_where_delphi_puts_them(length: int, count: int, expected: set[int]):
    marks = wrong_marks(np.zeros(length, dtype=np.float32), count)
    assert marks is not None and set(np.flatnonzero(marks).tolist()) == expected


def test_wrong_tokens_avoid_the_examples_active_tokens_and_one_candidate_gives_delphis_default_message():
    marks = wrong_marks(np.array([0, 0, 0, 0, 0, 0, 5, 0], dtype=np.float32), 2)  # position 6 is not a candidate
    assert marks is not None and set(np.flatnonzero(marks).tolist()) == {1, 7}
    assert wrong_marks(np.zeros(1, dtype=np.float32), 2) is None  # sample.py:539-545: 0-d index, the default text


def test_wrong_token_count_is_the_mean_number_of_nonzero_values_rounded_up():
    # ours would give ceil(mean highlighted) = 1; delphi counts nonzero values: ceil((3 + 1) / 2) = 2 (fuzz.py:347-355)
    test = (window(["a", "b", "c", "d"], [1.0, 0.1, 0.1, 0.0]), window(["a", "b", "c", "d"], [1.0, 0, 0, 0]))
    assert n_incorrect(test) == 2


def test_a_weakly_active_non_activating_example_gets_its_own_peak_highlighted():
    # fuzz.py:385-390: the first non-activating example has a value above zero, so each is highlighted as if correct
    test = (window(["x", " dog"], [0.0, 4.0]),)
    quiet = (window(["w", " x", " y", " z"], [0.0, 0.5, 0.1, 0.0]),)
    samples = fuzzing_samples(WindowSample(300, 200, test=test, test_slices=(0,), not_active=quiet))
    assert (samples[0].text, samples[0].activating) == ("w<< x>> y z", False)
    assert (samples[1].text, samples[1].activating) == ("x<< dog>>", True)


def test_a_one_token_inactive_window_shows_delphis_default_message():
    test = (window(["x", " dog"], [0.0, 4.0]),)
    samples = fuzzing_samples(WindowSample(300, 200, test=test, test_slices=(0,), not_active=(window(["z"], [0.0]),)))
    assert samples[0].text == DEFAULT_MESSAGE


# --- batches, prompt, answers, metrics (classifier.py, prompts/*.py, log/result_analysis.py) ------------------------


def test_prompt_is_delphis_with_its_few_shot_examples_and_examples_numbered_from_zero():
    messages = delphi_messages("detection", "dogs", ["a", "b\nc"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2 + ["user"]
    assert messages[2]["content"] == "[1,0,0,0,1]"
    assert messages[-1]["content"] == "Latent explanation: dogs\n\nText examples:\n\nExample 0: a\nExample 1: b\nc\n"
    assert "between tokens << and >>" in delphi_messages("fuzzing", "dogs", ["a"])[0]["content"]


def test_answers_are_the_first_list_of_exactly_the_batch_size():
    assert parse_answer("Sure: [1, 0, true, 0, 1] and [0]", 5) == [True, False, True, False, True]
    assert parse_answer("[1, 0, 1]", 5) is None  # classifier.py:148 asserts the length: the batch is lost
    assert parse_answer("1, 0, 1, 0, 1", 5) is None


def test_batches_are_a_seeded_shuffle_cut_every_n():
    samples = detection_samples(
        WindowSample(100, 10, test=tuple(window([str(i)], [1.0]) for i in range(7)), test_slices=(0,) * 7)
    )
    batches = shuffled_batches(samples, 5)
    assert [len(batch) for batch in batches] == [5, 2]
    assert sorted(s.text for b in batches for s in b) == [str(i) for i in range(7)]
    assert batches == shuffled_batches(samples, 5)


def test_a_class_without_answers_counts_zero_and_the_pooled_number_pools_examples():
    assert Confusion(5, 0, 0, 0).balanced_accuracy() == 0.5  # no negatives answered: 0 for them (result_analysis:126)
    small = {"true_positives": 1, "true_negatives": 1, "false_positives": 0, "false_negatives": 0}  # 1.0
    large = {"true_positives": 10, "true_negatives": 0, "false_positives": 10, "false_negatives": 0}  # 0.5
    # per-feature mean 0.75; pooled: recall 11/11, specificity 1/11 -> (1 + 1/11) / 2
    assert pooled_balanced_accuracy([small, large]) == pytest.approx((1 + 1 / 11) / 2)
    table = pd.DataFrame([{f"detection_{k}": v for k, v in row.items()} for row in (small, large)])
    assert pooled_metrics(table, ("detection", "fuzzing")) == {"detection_pooled": pytest.approx((1 + 1 / 11) / 2)}


# --- the whole convention through the loopback rater --------------------------------------------------------------


@pytest.fixture
def client(tmp_path) -> Iterator[LLMClient]:
    with LoopbackServer(FadeResponder()) as server:
        settings = LLMConfig(
            model="openai/scripted",
            api_base=server.url,
            cache_path=str(tmp_path / "cache.sqlite"),
            backoff_base_s=0.005,
        )
        made = LLMClient(settings, progress=False)
        yield made
        made.close()


def line_break_record(feature: int, num_active: int = 200) -> FeatureRecord:
    """A feature firing on "dog" right after a line break: 50 test windows and 50 silent ones."""
    test = tuple(window([f"Note {i}", ":\n", "dog", " barked"], [0, 0, 5.0 - i / 50, 0], i) for i in range(50))
    quiet = tuple(window(["The", " cat", " sat", " down"], [0, 0, 0, 0], 100 + i) for i in range(50))
    windows = WindowSample(1000, num_active, test=test, test_slices=tuple(i // 5 for i in range(50)), not_active=quiet)
    return FeatureRecord(feature, top_examples=test, pool=quiet, windows=windows)


def test_line_breaks_read_as_written_give_delphi_one_and_ours_one_half(client):
    records = [line_break_record(0)]
    descriptions = {0: 'the word "dog"'}
    delphi = run_scorers(records, descriptions, ScorersConfig(enabled=["detection"], convention="delphi"), client)
    ours = run_scorers(records, descriptions, ScorersConfig(enabled=["detection"]), client)
    assert delphi["detection"].tolist() == [1.0]
    assert delphi[["detection_true_positives", "detection_true_negatives", "detection_judged"]].values.tolist() == [
        [50, 50, 100]
    ]
    assert ours["detection"].tolist() == [0.5]  # "\\ndog" hides the word from a reader of the text as written


def test_fuzzing_in_the_delphi_convention_tells_right_highlights_from_wrong(client):
    table = run_scorers(
        [line_break_record(0)], {0: 'the word "dog"'}, ScorersConfig(enabled=["fuzzing"], convention="delphi"), client
    )
    assert table["fuzzing"].tolist() == [1.0]
    assert table["fuzzing_judged"].tolist() == [100]


def test_features_delphi_would_not_score_are_undefined_with_a_reason(client):
    records = [line_break_record(0, num_active=199), line_break_record(1)]
    table = run_scorers(
        records, {0: 'the word "dog"', 1: "  "}, ScorersConfig(enabled=["detection"], convention="delphi"), client
    )
    # below min_examples (constructors.py:288-293); a blank description stays undefined (delphi would score it)
    assert table["detection_reason"].tolist() == ["too_few_activating_examples", "no_description"]


def test_the_convention_changes_the_result_fingerprint_only_when_set():
    base = HarnessConfig.model_validate({"scorers": {"enabled": ["detection"]}})
    explicit = HarnessConfig.model_validate({"scorers": {"enabled": ["detection"], "convention": "harness"}})
    delphi = HarnessConfig.model_validate({"scorers": {"enabled": ["detection"], "convention": "delphi"}})
    assert result_fingerprint(base) == result_fingerprint(explicit) != result_fingerprint(delphi)


@pytest.mark.slow
def test_on_a_demo_feature_the_test_set_covers_every_rank_slice(tmp_path):
    """configs/demo.yaml's site (SmolLM2 MLP neurons) on its corpus: every feature's 50 test windows come 5 from
    each of the 10 rank slices, and each slice's windows rank below the previous slice's."""
    from harness.activations import delphi_windows, extract_activations
    from harness.config import load_config
    from harness.corpus import load_corpus
    from harness.model import load_subject_model
    from harness.sites import build_site

    config = load_config("configs/demo.yaml", {"activations.cache_dir": str(tmp_path / "cache")})
    loaded = load_subject_model(config.model)
    corpus = load_corpus(config.corpus, loaded.tokenizer)
    site = build_site(config.site, loaded)
    activation_set = extract_activations(loaded, site, corpus, config.activations, progress=False)
    samples = delphi_windows(
        loaded.tokenizer, corpus, activation_set, config.activations, config.scorers.delphi, progress=False
    )
    for feature, windows in samples.items():
        assert windows.num_active >= config.scorers.delphi.min_examples, feature
        assert list(windows.test_slices) == [part for part in range(10) for _ in range(5)]
        peaks = [float(example.activations[example.activations != 0].max()) for example in windows.test]
        for part in range(9):
            assert min(peaks[5 * part : 5 * part + 5]) >= max(peaks[5 * part + 5 : 5 * part + 10])
        assert all(len(example.tokens) <= config.scorers.delphi.example_ctx_len for example in windows.test)


def test_delphis_test_set_reaches_below_our_activating_threshold():
    """A feature whose 200 active windows decay from 10 to 0.1: delphi's rank slices draw 37 of its 50 test
    windows below 0.3 x the max; our convention never labels such an example activating (activating_above 0.3)."""
    from harness.config import DetectionConfig
    from harness.evaluate.scorers import scoring_examples

    values = 10.0 * (0.01 ** (np.arange(200) / 199))  # descending, by rank
    below = [rank for rank, _ in slice_ranks(200, 50, 10) if values[rank] < 0.3 * values[0]]
    assert len(below) == 37  # ranks 53 and below: from slice 2 (ranks 40-59) on
    examples = tuple(window(["w", " dog"], [0.0, float(value)], i) for i, value in enumerate(values))
    ours = scoring_examples(FeatureRecord(0, top_examples=examples[:20], pool=examples[20:]), DetectionConfig())
    assert all(float(item.example.activations.max()) >= 0.3 * values[0] for item in ours if item.activating)
