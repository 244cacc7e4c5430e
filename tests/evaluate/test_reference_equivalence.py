"""Our FADE numbers against the reference package itself (fade-language 0.1.2) on many random inputs.

Where the reference crashes, the tests show the crash and our undefined score with its reason.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from needs import import_or_missing

REFERENCE_MISSING = (
    "the FADE reference is not importable; install it as tox.ini does "
    "(fade-language==0.1.2 with --no-deps, then the packages its imports need)"
)
# ImportError too, not only a missing module: a langchain release that breaks fade's imports is missing too
# (a skip here, a failure in CI: tests/needs.py).
torch = import_or_missing("torch", REFERENCE_MISSING)
fade_results = import_or_missing("fade.results", REFERENCE_MISSING)
fade_llm = import_or_missing("fade.llm", REFERENCE_MISSING)

from harness.evaluate.fade._metrics import (  # noqa: E402
    clarity,
    faithfulness,
    gini_ap,
    p2_from_ratings,
    responsiveness_purity,
)
from harness.evaluate.fade.sampling import DEFAULT_PERCENTILES, activation_based_subset  # noqa: E402
from harness.score_names import Reason  # noqa: E402

REFERENCE_FACTORS = [-50, -10, -1, 0, 1, 10, 50]


def random_activations(rng: np.random.Generator, size: int) -> np.ndarray:
    """Activations of the shapes features show: dense, tied integers, sparse ReLU, all negative, constant."""
    kind = rng.integers(6)
    if kind == 0:
        values = rng.normal(size=size)
    elif kind == 1:
        values = rng.integers(-3, 4, size=size).astype(float)
    elif kind == 2:
        values = np.maximum(rng.normal(size=size) - 1.0, 0.0)
    elif kind == 3:
        values = -rng.exponential(size=size)
    elif kind == 4:
        values = np.round(rng.normal(scale=2.0, size=size), 1)
    else:
        values = np.full(size, rng.normal())
    return values.astype(rng.choice([np.float32, np.float64]))


def tie_free(values: np.ndarray) -> bool:
    return np.unique(values).size == values.size


class ChoiceSpy:
    """Records every np.random.choice call the reference makes; the draws themselves are numpy's."""

    def __init__(self, original):
        self.original = original
        self.calls: list[tuple[np.ndarray, int, np.ndarray]] = []

    def __call__(self, population, size, replace=True, p=None):
        result = self.original(population, size, replace=replace, p=p)
        self.calls.append((np.asarray(population), size, np.asarray(result)))
        return result


@pytest.fixture
def choice_spy(monkeypatch):
    spy = ChoiceSpy(np.random.choice)
    monkeypatch.setattr(np.random, "choice", spy)
    return spy


def test_gini_ap_equals_reference_on_random_inputs():
    rng = np.random.default_rng(0)
    compared = negative_gini = 0
    for _ in range(400):
        num_negative = int(rng.choice([1, 2, rng.integers(1, 300)]))
        num_positive = int(rng.choice([1, 3, rng.integers(1, 300)]))
        values = random_activations(rng, num_negative + num_positive)
        labels = rng.permutation(np.r_[np.zeros(num_negative, int), np.ones(num_positive, int)])
        if rng.random() < 0.3:  # the concept marked by low activations: negative signed Gini
            values = values - 2 * labels * np.abs(values).max()
        ours = gini_ap(values, labels)
        ref_gini, ref_ap = fade_results.gini_ap_metric(
            torch.from_numpy(values[labels == 0]), torch.from_numpy(values[labels == 1])
        )
        assert (ours.gini.value, ours.average_precision.value) == (ref_gini, ref_ap)
        compared += 1
        negative_gini += ours.signed_gini < 0
    assert compared == 400 and negative_gini > 50


def test_gini_ap_reference_gives_nan_or_crashes_where_ours_is_undefined():
    """One class only: sklearn < 1.6 raises, newer sklearn warns and the reference reports Gini NaN."""
    cases = [([0.5, 1.0], [], Reason.NO_POSITIVE_SAMPLES), ([], [0.5], Reason.NO_NEGATIVE_SAMPLES)]
    for negative, positive, reason in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ref_gini = fade_results.gini_ap_metric(torch.tensor(negative), torch.tensor(positive))[0]
            except ValueError:
                ref_gini = None
        assert ref_gini is None or math.isnan(ref_gini)
        ours = gini_ap(negative + positive, [0] * len(negative) + [1] * len(positive))
        assert ours.gini.value is None and ours.gini.reason == reason == ours.average_precision.reason


def test_clarity_responsiveness_purity_equal_reference_pipeline_results():
    """Against GenerateResults.activation_centric_results: the reference's own rating-1 drop and split."""
    rng = np.random.default_rng(1)
    reference = fade_results.GenerateResults(output_path=None, store_data=False)
    compared = crashed = 0
    for _ in range(200):
        natural = random_activations(rng, int(rng.integers(5, 400)))
        synthetic = random_activations(rng, int(rng.integers(1, 60))).astype(natural.dtype) + rng.normal()
        rated = rng.permutation(natural.size)[: int(rng.integers(1, natural.size + 1))]
        weights = rng.dirichlet(np.ones(3))
        ratings = rng.choice(3, size=rated.size, p=weights)
        if rng.random() < 0.15:
            ratings[ratings == rng.choice([0, 2])] = 1  # no rated-0 or no rated-2 samples
        ratings_by_id = {str(sample): int(rating) for sample, rating in zip(rated, ratings)}

        ours_clarity = clarity(synthetic, natural)
        ours = responsiveness_purity(natural[rated], ratings)
        arguments = {
            "natural_dataset": None,
            "synthetic_dataset": None,
            "natural_activations": torch.from_numpy(natural),
            "synthetic_activations": torch.from_numpy(synthetic),
            "natural_ratings": ratings_by_id,
        }
        if (ratings == 0).any() and (ratings == 2).any():
            ref_clarity, ref_responsiveness, ref_purity = reference.activation_centric_results(**arguments)
            assert (ours_clarity.value, ours.gini.value, ours.average_precision.value) == (
                ref_clarity,
                ref_responsiveness,
                ref_purity,
            )
            compared += 1
        else:
            with pytest.raises(UnboundLocalError):  # the reference's defect
                reference.activation_centric_results(**arguments)
            expected = Reason.NO_RATED_2_SAMPLES if not (ratings == 2).any() else Reason.NO_RATED_0_SAMPLES
            assert ours.gini.value is None and ours.gini.reason == expected
            assert ours.average_precision.reason == expected
            crashed += 1
    assert compared > 100 and crashed > 10


def random_factor_ratings(rng: np.random.Generator) -> dict[float, dict[str, int]]:
    num_sequences = int(rng.integers(1, 60))
    factors = [f for f in REFERENCE_FACTORS if rng.random() < 0.8 or f == 0]
    ratings: dict[float, dict[str, int]] = {}
    for factor in factors:
        weights = rng.dirichlet(np.ones(3) * 0.5)
        ids = [i for i in range(num_sequences) if rng.random() > 0.1]  # some ratings failed for good
        ratings[factor] = {str(i): int(rng.choice(3, p=weights)) for i in ids}
    if rng.random() < 0.1:
        ratings[0] = {key: 2 for key in ratings[0]}  # baseline already all rated 2
    if rng.random() < 0.05:
        del ratings[0]  # baseline missing
    return ratings


def test_faithfulness_equals_reference_on_random_inputs():
    rng = np.random.default_rng(2)
    compared = positive = baseline_full = no_baseline = 0
    for _ in range(400):
        ratings = random_factor_ratings(rng)
        ours_p2 = p2_from_ratings({factor: by_id.values() for factor, by_id in ratings.items()})
        ours = faithfulness(ours_p2)
        if 0 not in ratings or not ratings[0]:
            # The reference raises KeyError, returns NaN, or returns 0 when nothing was rated 2 at all.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    ref_value = fade_results.faithfulness_metric(ratings)[0]
                except KeyError:
                    ref_value = None
            assert ref_value is None or math.isnan(ref_value) or ref_value == 0
            assert ours.score.reason == Reason.NO_BASELINE_RATINGS
            no_baseline += 1
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the reference's 0/0 when p2(0) == 1
            ref_value, ref_factor, value_counts = fade_results.faithfulness_metric(ratings)
        ref_p2 = value_counts.loc[2] if 2 in value_counts.index else value_counts.iloc[0] * 0
        assert ours_p2 == {float(f): float(ref_p2[f]) for f in ratings if ratings[f]}
        if ours_p2[0.0] == 1:
            assert math.isnan(ref_value) and ours.score.reason == Reason.BASELINE_ALL_RATED_2
            baseline_full += 1
            continue
        assert ours.score.value == ref_value
        compared += 1
        if ref_value > 0:
            positive += 1
            assert ref_factor == max(ratings)  # the reference's defect: the largest factor tried
            assert ours_p2[ours.factor] == max(ours_p2.values())  # ours: the factor attaining the max
        else:
            assert ref_factor is None and ours.factor is None
    assert compared > 250 and positive > 100 and baseline_full > 10 and no_baseline > 5


def reference_subset(activations: np.ndarray, num_samples: int, seed: int, top_sampling: float = 0.1) -> list[int]:
    np.random.seed(seed)
    return fade_llm.RateSamples.get_activation_based_subset(
        None, torch.from_numpy(activations), num_samples, top_sampling=top_sampling
    )


def assert_same_bin_draws(subset, spy: ChoiceSpy, activations: np.ndarray, candidates: np.ndarray) -> None:
    """Same calls with the same quota, from bins of the same values, giving the same draws.

    Only bins larger than the quota are drawn from (both implementations take smaller ones whole).
    """
    candidate_values = activations[candidates]
    sorted_values = np.sort(candidate_values)
    edges = [int(p / 100 * candidates.size) for p in DEFAULT_PERCENTILES]
    bins = [(i, low, high) for i, (low, high) in enumerate(zip(edges, edges[1:])) if high - low > subset.quota_per_bin]
    assert len(spy.calls) == len(bins)
    for (position, low, high), (population, size, result) in zip(bins, spy.calls):
        ours = subset.bin_draws[position]
        assert size == subset.quota_per_bin == ours.size
        # Bins hold the same sorted values; with ties their sample ids may differ (torch's unstable sort).
        assert np.array_equal(candidate_values[population], sorted_values[low:high])
        assert np.array_equal(candidate_values[result], activations[ours])
        if tie_free(candidate_values):
            assert np.array_equal(candidates[result], ours)


def test_activation_based_subset_draws_equal_reference_with_same_seed(choice_spy):
    rng = np.random.default_rng(3)
    compared = fewer_than_asked = with_ties = 0
    for seed in range(300):
        activations = random_activations(rng, int(rng.integers(1, 3000)))
        num_samples = int(rng.integers(1, activations.size + 50))
        choice_spy.calls.clear()
        reference = reference_subset(activations, num_samples, seed)
        state = np.random.RandomState(seed)
        ours = activation_based_subset(activations, num_samples, rng=state)
        # Same number of random numbers consumed: a sparse retry continues on the same stream.
        assert np.array_equal(state.get_state()[1], np.random.get_state()[1])
        assert state.get_state()[2] == np.random.get_state()[2]
        if activations.size <= num_samples:
            assert sorted(reference) == ours.indices.tolist() == list(range(activations.size))
            continue
        assert_same_bin_draws(ours, choice_spy, activations, np.arange(activations.size))
        assert ours.indices.size == np.unique(ours.indices).size == num_samples
        assert len(reference) <= num_samples
        if tie_free(activations):
            # The reference's extra samples are the overall top; ours go on below what is already drawn.
            assert set(reference) <= set(ours.indices.tolist())
            assert (set(reference) == set(ours.indices.tolist())) == (len(reference) == num_samples)
        else:
            with_ties += 1
        compared += 1
        fewer_than_asked += len(reference) < num_samples
    assert compared > 200 and fewer_than_asked > 100 and with_ties > 50


def test_reference_rates_fewer_than_asked_ours_exactly_308_of_1600(choice_spy):
    activations = np.random.default_rng(4).normal(size=1600).astype(np.float32)
    reference = reference_subset(activations, 308, seed=0)
    ours = activation_based_subset(activations, 308, rng=np.random.RandomState(0))
    assert ours.quota_per_bin == 69 and [draw.size for draw in ours.bin_draws] == [69, 69, 69, 69]
    assert ours.top_fill.size == 308 - 4 * 69
    assert_same_bin_draws(ours, choice_spy, activations, np.arange(activations.size))
    assert len(reference) < 290 and ours.indices.size == np.unique(ours.indices).size == 308


def test_reference_rates_everything_when_no_top_share_ours_exactly_asked():
    # Every bin (the top 5% holds 200) is larger than its quota of 100, so nothing is left for the top.
    activations = np.random.default_rng(5).normal(size=4000)
    reference = reference_subset(activations, 400, seed=0, top_sampling=0.0)
    ours = activation_based_subset(activations, 400, rng=np.random.RandomState(0), top_share=0.0)
    assert len(reference) == 4000  # sorted_indices[-0:] is every sample
    assert ours.indices.size == 400 and ours.top_fill.size == 0


def reference_additional_samples(activations: np.ndarray, rated: np.ndarray, num_samples: int, seed: int) -> set[int]:
    rater = fade_llm.RateSamples.__new__(fade_llm.RateSamples)  # the method uses no instance state
    np.random.seed(seed)
    chosen = rater.get_additional_samples_for_sparse_concepts(
        dataset=[(i, f"sample {i}") for i in range(activations.size)],
        existing_ratings={str(i): 0 for i in rated},
        activations=torch.from_numpy(activations),
        num_samples=num_samples,
    )
    return set(chosen)


def test_sparse_retry_exclude_equals_reference_additional_samples(choice_spy):
    """`exclude` against RateSamples.get_additional_samples_for_sparse_concepts (the sparse retry).

    The reference draws on the unrated activations (in index order) and maps the positions back through
    `list(set(range(n)) - set(rated))`, which is not always sorted; compared in those positions, its
    choice is ours.
    """
    rng = np.random.default_rng(6)
    compared = mis_mapped = 0
    for seed in range(150):
        activations = random_activations(rng, int(rng.integers(2, 2500)))
        rated = rng.permutation(activations.size)[: int(rng.integers(1, activations.size))]
        num_samples = int(rng.integers(1, activations.size - rated.size + 20))
        choice_spy.calls.clear()
        reference = reference_additional_samples(activations, rated, num_samples, seed)
        ours = activation_based_subset(activations, num_samples, rng=np.random.RandomState(seed), exclude=rated)
        unrated = np.setdiff1d(np.arange(activations.size), rated)
        assert not set(ours.indices.tolist()) & set(rated.tolist())
        if unrated.size <= num_samples:
            assert reference == set(ours.indices.tolist()) == set(unrated.tolist())
            continue
        assert_same_bin_draws(ours, choice_spy, activations, unrated)
        assert ours.indices.size == num_samples and len(reference) <= num_samples
        reference_order = list(set(range(activations.size)) - set(rated.tolist()))
        reference_positions = {reference_order.index(sample) for sample in reference}
        ours_positions = set(np.searchsorted(unrated, ours.indices).tolist())
        assert {int(p) for _, _, result in choice_spy.calls for p in result} <= reference_positions
        if tie_free(activations[unrated]):
            assert reference_positions <= ours_positions
        compared += 1
        mis_mapped += reference_order != sorted(reference_order)
    assert compared > 100 and mis_mapped > 10


def test_sparse_retry_reference_loses_top_samples_ours_keeps_them():
    """Activation = sample index; 800 of 1,100 rated: the reference's mis-mapping skips the top unrated."""
    activations = np.arange(1100, dtype=np.float64)
    rated = np.random.default_rng(0).permutation(activations.size)[:800]
    top_unrated = set(np.setdiff1d(np.arange(activations.size), rated)[-10:].tolist())
    reference = reference_additional_samples(activations, rated, 100, seed=0)
    ours = activation_based_subset(activations, 100, rng=np.random.RandomState(0), exclude=rated)
    assert len(reference & top_unrated) < 5
    assert top_unrated <= set(ours.indices.tolist())
