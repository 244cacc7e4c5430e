"""The saebench scorer against sae-bench 0.6.0's own code (sae_bench/evals/autointerp/main.py).

sae-bench does not import here without sae_lens, transformer_lens and their dependencies, so its scoring
functions are not called in the suite: the draw's expected positions were computed
by running sae-bench 0.6.0's own indexing functions (sae_bench_utils/indexing_utils.py) in the order of
AutoInterp.gather_data (main.py:420-510) on the global generators seeded 42; the parsing and scoring answers
are hand-checked from main.py:284-309.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from harness.activations._saebench import largest_positions, saebench_draw
from harness.activations.types import ActivatingExample, SAEBenchSample
from harness.config import LLMConfig, SAEBenchConfig, ScorersConfig
from harness.evaluate.scorers import run_scorers
from harness.evaluate.scorers._saebench import (
    example_response,
    example_text,
    parse_predictions,
    saebench_messages,
    saebench_score,
)
from harness.explain import FeatureRecord
from harness.llm import LLMClient
from harness.testing.loopback import LoopbackServer
from harness.testing.responders import FadeResponder


def constructed_activations() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sparse features' (40 samples, 48 tokens) activations from a fixed torch generator."""
    generator = torch.Generator().manual_seed(7)
    first = torch.relu(torch.randn(40, 48, generator=generator)) * (torch.rand(40, 48, generator=generator) < 0.3)
    second = torch.relu(torch.randn(40, 48, generator=generator)) * (torch.rand(40, 48, generator=generator) < 0.2)
    return first, second


def test_the_draw_is_saebenchs_on_the_same_activations():
    first, second = constructed_activations()
    generator, rng = torch.Generator().manual_seed(42), random.Random(42)
    draw = saebench_draw(first, SAEBenchConfig(), generator, rng)
    assert draw is not None
    assert draw.generation == [
        (7, 14), (37, 17), (11, 30), (22, 26), (25, 22), (21, 19), (19, 22), (27, 17), (33, 24), (5, 21),
        (27, 19), (13, 16), (11, 14), (21, 28), (14, 35),
    ]  # fmt: skip
    assert draw.scoring == [
        (0, 18), (24, 28), (19, 32), (22, 34), (22, 24), (27, 36), (36, 16), (14, 28), (26, 25), (15, 26),
        (20, 37), (4, 37), (30, 33), (33, 20),
    ]  # fmt: skip
    assert draw.order == [8, 12, 7, 6, 13, 11, 5, 2, 9, 3, 4, 0, 1, 10]
    assert draw.act_threshold == pytest.approx(0.029208247661590577)
    assert saebench_draw(second, SAEBenchConfig(), generator, rng) is not None  # the streams go on feature by feature


def test_top_examples_keep_their_distance_and_a_feature_without_lower_values_is_skipped():
    acts = torch.zeros(2, 30)
    acts[0, 12], acts[0, 13], acts[1, 15] = 5.0, 4.0, 3.0
    assert largest_positions(acts, 2, 10, no_overlap=True) == [(0, 12), (1, 15)]  # (0, 13) is within the buffer
    assert largest_positions(acts, 2, 10, no_overlap=False) == [(0, 12), (0, 13)]
    flat = torch.ones(4, 30)  # every value equals the lowest top value: nothing left to importance-sample
    assert saebench_draw(flat, SAEBenchConfig(), torch.Generator().manual_seed(42), random.Random(42)) is None


def test_predictions_are_parsed_as_saebench_parses_them():
    assert parse_predictions("1, 3 and 5.") == [1, 3, 5]  # "and" reads as a comma, the full stop is dropped
    assert parse_predictions("None") == []
    assert parse_predictions("1, 2, seven") is None
    assert parse_predictions("Examples: 1, 2") is None  # anything but numbers: the feature is not scored


def test_the_score_is_the_share_of_examples_classed_right():
    active = [True, False, True, False]
    assert saebench_score([1, 3], active) == 1.0
    assert saebench_score([1, 2], active) == 0.5
    assert saebench_score([], active) == 0.5  # "None": every inactive example is right
    assert saebench_score([1, 3, 99], active) == 1.0  # a number out of range changes nothing


def test_the_prompt_is_saebenchs():
    rng = random.Random(0)
    shown = example_response(rng, SAEBenchConfig())
    assert len(shown) == 4 and shown == sorted(shown)
    messages = saebench_messages("dogs", ["a\nb\ufffd", "c"], shown)
    assert "then be shown 2 example sequences in random order" in messages[0]["content"]
    assert f'your response might look like "{", ".join(map(str, shown))}"' in messages[0]["content"]
    assert (
        messages[1]["content"]
        == "Here is the explanation: this neuron fires on dogs.\n\nHere are the examples:\n\n1. a\nb\ufffd\n2. c"
    )
    assert example_text(["a", "\n", "b\ufffd"]) == "a↵b"


def window(text_tokens: list[str], value: float, sample_id: int) -> ActivatingExample:
    values = np.array([value if "dog" in token else 0.0 for token in text_tokens], dtype=np.float32)
    return ActivatingExample(sample_id, "".join(text_tokens), text_tokens, values, float(values.max()), 0)


@pytest.fixture
def client(tmp_path) -> Iterator[LLMClient]:
    with LoopbackServer(FadeResponder()) as server:
        made = LLMClient(
            LLMConfig(model="openai/scripted", api_base=server.url, cache_path=str(tmp_path / "c.sqlite")),
            progress=False,
        )
        yield made
        made.close()


def test_a_true_description_scores_one_and_one_that_fits_only_the_inactive_examples_zero(client):
    active = [window(["The", " dog", " barked"], 3.0, i) for i in range(4)]
    quiet = [window(["A", " cat", " sat"], 0.0, 10 + i) for i in range(10)]
    order = [4, 0, 5, 6, 1, 7, 8, 2, 9, 10, 3, 11, 12, 13]
    scoring = [(active + quiet)[i] for i in order]
    sample = SAEBenchSample(generation=tuple(active), scoring=tuple(scoring), active=tuple(i < 4 for i in order))
    records = [FeatureRecord(0, top_examples=tuple(active), saebench=sample), FeatureRecord(1, top_examples=())]
    config = ScorersConfig(enabled=["saebench"])
    table = run_scorers(records, {0: 'the word "dog"', 1: 'the word "dog"'}, config, client)
    assert table["saebench"].tolist()[0] == 1.0
    assert table["saebench_reason"].tolist()[1] == "too_few_activating_examples"  # SAEBench skipped it
    wrong = run_scorers(records[:1], {0: 'the word "cat"'}, config, client)
    assert wrong["saebench"].tolist() == [0.0]  # lists the 10 inactive ones, misses the 4 active ones


def test_the_saebench_selection_preset_shows_saebenchs_explainer_examples():
    from harness.config import ExampleSelectionConfig
    from harness.explain import select_examples

    generation = tuple(window(["The", " dog", " ran"], 3.0 - i / 10, i) for i in range(15))
    sample = SAEBenchSample(generation=generation, scoring=(), active=())
    record = FeatureRecord(0, top_examples=(window(["Top", " dog"], 9.0, 99),), saebench=sample)
    settings = ExampleSelectionConfig(strategy="saebench")
    assert select_examples(record, settings).examples == generation  # not the record's top example
    assert select_examples(FeatureRecord(1, top_examples=record.top_examples), settings).examples == ()
