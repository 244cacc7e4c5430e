"""The scorers' pure numbers on hand-computed cases, and expected values from token log-probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import EvaluationError
from harness.evaluate.scorers import (
    binary_scores,
    expected_values,
    rater_values,
    read_values,
    similarity_auroc,
    simulation_correlation,
)
from harness.llm import Completion
from harness.score_names import Reason


def test_binary_scores_known_answer():
    result = binary_scores([1, 1, 0, 0], [1, 0, 0, 0], [0.9, 0.4, 0.3, 0.1])
    assert result.balanced_accuracy.value == pytest.approx(0.75)  # recall 1/2, specificity 2/2
    assert result.f1.value == pytest.approx(2 / 3)  # tp 1, fp 0, fn 1
    assert result.auroc.value == pytest.approx(1.0)
    assert result.num_judged == 4


def test_balanced_accuracy_ignores_class_imbalance():
    labels = [1] * 9 + [0]
    always_yes = binary_scores(labels, [1] * 10)
    assert always_yes.balanced_accuracy.value == pytest.approx(0.5)  # plain accuracy would be 0.9


def test_binary_scores_undefined_cases():
    no_probabilities = binary_scores([1, 0], [1, 0])
    assert no_probabilities.balanced_accuracy.value == 1.0
    assert no_probabilities.auroc.reason == Reason.NO_SCORES
    one_class = binary_scores([1, 1], [1, 0])
    assert one_class.balanced_accuracy.reason == Reason.SINGLE_CLASS_ANSWERED
    assert binary_scores([], []).balanced_accuracy.reason == Reason.NO_VALID_ANSWERS
    with pytest.raises(EvaluationError, match="one per label"):
        binary_scores([1, 0], [1])


def test_simulation_correlation():
    truth = np.array([0.0, 0.0, 5.0, 10.0, 0.0])
    assert simulation_correlation(truth, truth * 0.3 + 1).value == pytest.approx(1.0)  # scale-free
    assert simulation_correlation(truth, -truth).value == pytest.approx(-1.0)
    assert simulation_correlation(truth, np.zeros(5)).value == 0.0  # predicts no variation
    assert simulation_correlation(np.zeros(5), truth).reason == Reason.CONSTANT_ACTIVATIONS
    assert simulation_correlation([], []).reason == Reason.NO_VALID_ANSWERS
    predicted = np.array([1.0, 0.0, 4.0, 9.0, 2.0])
    assert simulation_correlation(truth, predicted).value == pytest.approx(np.corrcoef(truth, predicted)[0, 1])


def test_similarity_auroc():
    assert similarity_auroc([1, 1, 0, 0], [0.9, 0.5, 0.6, 0.1]).value == pytest.approx(0.75)
    assert similarity_auroc([0, 0], [0.1, 0.2]).reason == Reason.NO_ACTIVATING_EXAMPLES
    assert similarity_auroc([1, 1], [0.1, 0.2]).reason == Reason.NO_NON_ACTIVATING_EXAMPLES


def alternatives(**probabilities: float) -> dict[str, float]:
    return {token.removeprefix("t"): math.log(p) for token, p in probabilities.items()}


def test_expected_values_from_the_value_tokens():
    tokens = [
        ('{"', {}),
        ("1", {}),  # an id, not a value: its alternatives must not be read
        ('":', {}),
        (" 1", alternatives(t1=0.8, t0=0.2)),
        (', "', {}),
        ("2", {}),
        ('":', {}),
        (" 0", {**alternatives(t0=0.6, t1=0.3), "maybe": math.log(0.1)}),
        ("}", {}),
    ]
    expected = expected_values(tokens, expected_ids={1, 2}, allowed=(0, 1))
    assert expected == pytest.approx({1: 0.8, 2: 0.3 / 0.9})


def test_expected_values_on_the_0_10_scale_and_split_numbers():
    tokens = [
        ('{"0": ', {}),
        ("10", alternatives(t10=0.5, t8=0.25, t0=0.25)),
        (', "1": ', {}),
        ("1", alternatives(t1=0.9, t2=0.1)),  # "10" written as "1" + "0": left out
        ("0", {}),
        (', "2": ', {}),
        ("3", {"three": 0.0}),  # no allowed alternative: left out
        ("}", {}),
    ]
    assert expected_values(tokens, expected_ids={0, 1, 2}, allowed=range(11)) == pytest.approx({0: 7.0})


def test_rater_values_prefers_expected_values_and_never_raises():
    text = '{"1": 1, "2": 0}'
    tokens = (
        ('{"1": ', {}),
        ("1", alternatives(t1=0.7, t0=0.3)),
        (', "2": ', {}),
        ("0", alternatives(t0=1.0)),
        ("}", {}),
    )
    with_logprobs = Completion(text, 0, 0, 0.0, False, "m", logprobs=tokens)
    values = rater_values(with_logprobs, [1, 2], (0, 1))
    assert values.written == {1: 1, 2: 0} and values.complete
    assert values.expected == pytest.approx({1: 0.7, 2: 0.0})
    plain = rater_values(Completion(text, 0, 0, 0.0, False, "m"), [1, 2], (0, 1))
    assert plain.written == {1: 1, 2: 0} and plain.expected == {}
    for garbage in ("", "no idea", '{"1": 7, "9": 1', "[1, 0, 1]", "[1, 2]", None):
        values = rater_values(Completion(garbage, 0, 0, 0.0, False, "m"), [1, 2], (0, 1))
        assert values.written == {} and not values.complete


def test_read_values_accepts_a_list_in_prompt_order():
    assert read_values("My answer: [0, 1, 1]", [7, 8, 9], (0, 1)) == ({7: 0, 8: 1, 9: 1}, True)
    assert read_values('```json\n{"8": 1}\n```', [7, 8, 9], (0, 1)) == ({8: 1}, False)  # partial dict, no list
