"""Activation-based sampling: quotas, bins, the top fill, exclusion, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import EvaluationError
from harness.evaluate.fade.sampling import activation_based_subset, random_subset


@pytest.mark.parametrize(("num_samples", "quota"), [(500, 112), (308, 69), (10, 2), (4, 0), (1, 0)])
def test_quota_per_bin_is_the_reference_expression(num_samples, quota):
    # int(num_samples * 0.9 // 4): 450 // 4 = 112, 277.2 // 4 = 69, 9 // 4 = 2, 3.6 // 4 = 0.
    subset = activation_based_subset(np.arange(2000.0), num_samples, rng=np.random.default_rng(0))
    assert subset.quota_per_bin == quota
    assert subset.indices.size == num_samples


def test_known_small_case_bins_and_top_fill():
    # 20 samples with activation = index; 10 asked: quota 2; bins [0,10) [10,15) [15,19) [19,20).
    subset = activation_based_subset(np.arange(20.0), 10, rng=np.random.default_rng(7))
    low, middle, high, top = (set(draw.tolist()) for draw in subset.bin_draws)
    assert len(low) == len(middle) == len(high) == 2
    assert low <= set(range(10)) and middle <= set(range(10, 15)) and high <= set(range(15, 19))
    assert top == {19}  # a bin no larger than the quota is taken whole
    drawn = low | middle | high | top
    expected_fill = sorted(set(range(20)) - drawn, reverse=True)[:3]  # 10 - 7 drawn = 3, highest first
    assert subset.top_fill.tolist() == expected_fill
    assert subset.indices.tolist() == sorted(drawn | set(expected_fill))


def test_exactly_num_samples_distinct_on_many_inputs():
    rng = np.random.default_rng(1)
    for _ in range(200):
        size = int(rng.integers(1, 3000))
        activations = rng.choice([rng.normal(size=size), rng.integers(-2, 3, size=size).astype(float), np.zeros(size)])
        num_samples = int(rng.integers(1, size + 20))
        subset = activation_based_subset(activations, num_samples, rng=rng, top_share=float(rng.uniform(0, 0.5)))
        assert subset.indices.size == np.unique(subset.indices).size == min(num_samples, size)
        assert np.all(np.diff(subset.indices) > 0) and subset.indices.min() >= 0 and subset.indices.max() < size


def test_top_fill_holds_the_highest_samples_not_drawn():
    activations = np.random.default_rng(2).normal(size=1600)
    subset = activation_based_subset(activations, 308, rng=np.random.default_rng(0))
    drawn = np.concatenate(subset.bin_draws)
    assert not set(subset.top_fill.tolist()) & set(drawn.tolist())
    rest = np.setdiff1d(np.arange(activations.size), np.concatenate([drawn, subset.top_fill]))
    assert activations[subset.top_fill].min() > activations[rest].max()
    assert np.all(np.diff(activations[subset.top_fill]) < 0)  # descending
    assert subset.indices.size == 308


def test_few_samples_are_all_taken():
    subset = activation_based_subset([0.3, -1.0, 2.0], 3, rng=np.random.default_rng(0))
    assert subset.indices.tolist() == [0, 1, 2] and subset.bin_draws == () and subset.top_fill.size == 0


def test_exclude_keeps_rated_samples_out():
    activations = np.random.default_rng(3).normal(size=1000)
    first = activation_based_subset(activations, 300, rng=np.random.default_rng(0))
    retry = activation_based_subset(activations, 300, rng=np.random.default_rng(1), exclude=first.indices)
    assert retry.indices.size == 300 and not set(retry.indices.tolist()) & set(first.indices.tolist())
    # The highest sample not rated the first time is in the retry's top.
    unrated = np.setdiff1d(np.arange(1000), first.indices)
    assert unrated[np.argmax(activations[unrated])] in retry.indices
    leftover = activation_based_subset(activations, 900, rng=np.random.default_rng(1), exclude=first.indices)
    assert leftover.indices.tolist() == unrated.tolist()  # no more than asked left: all of them


def test_randomness_only_from_the_rng_given():
    activations = np.random.default_rng(4).normal(size=500)
    np.random.seed(123)
    global_state = np.random.get_state()[1].copy()
    first = activation_based_subset(activations, 100, rng=np.random.default_rng(9))
    again = activation_based_subset(activations, 100, rng=np.random.default_rng(9))
    legacy = activation_based_subset(activations, 100, rng=np.random.RandomState(9))
    assert np.array_equal(first.indices, again.indices)
    assert np.array_equal(np.random.get_state()[1], global_state)
    assert legacy.indices.size == 100 and not np.array_equal(legacy.indices, first.indices)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "at least 1"),
        ({"top_share": 1.5}, "top_share"),
        ({"percentiles": (0, 50, 50, 100)}, "increasing"),
        ({"percentiles": (0, 120)}, "within"),
        ({"exclude": [5, 10]}, "outside 0..9"),
        ({"activations": [[1.0, 2.0]]}, "1-D"),
        ({"activations": [1.0, float("inf")]}, "non-finite"),
    ],
)
def test_bad_input_is_rejected(kwargs, message):
    arguments = {"activations": np.arange(10.0), "num_samples": 5, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(EvaluationError, match=message):
        activation_based_subset(**arguments)


def test_random_subset_matches_the_reference_call_and_takes_all_when_short():
    np.random.seed(5)
    reference = np.random.choice(1000, 50, replace=False)  # the reference's faithfulness prompt draw
    ours = random_subset(1000, 50, rng=np.random.RandomState(5))
    assert ours.tolist() == reference.tolist() and np.unique(ours).size == 50
    assert random_subset(30, 50, rng=np.random.default_rng(0)).tolist() == list(range(30))
    with pytest.raises(EvaluationError, match="at least 1"):
        random_subset(30, 0, rng=np.random.default_rng(0))
