import numpy as np
import pytest

from harness.config import ExampleSelectionConfig
from harness.explain import FeatureRecord, crop_to_window, select_examples


@pytest.fixture
def ranked_record(make_example):
    """40 active samples with peak activation 1..40 (sample id = activation) and 10 silent ones (ids 100+)."""
    active = [make_example(value, ["a", "b", "c"], [0.0, float(value), 0.0]) for value in range(40, 0, -1)]
    silent = [make_example(100 + index, ["x", "y"], [0.0, -0.01 * index]) for index in range(10)]
    return FeatureRecord(feature=7, top_examples=tuple(active[:10]), pool=tuple(active[10:] + silent))


def ids(examples):
    return [example.sample_id for example in examples]


def test_top_takes_the_highest_in_descending_order(ranked_record):
    selection = select_examples(ranked_record, ExampleSelectionConfig(strategy="top", num_examples=5))
    assert ids(selection.examples) == [40, 39, 38, 37, 36]
    assert selection.contrast == ()


def test_fewer_active_samples_than_asked_shows_all_of_them(ranked_record):
    for strategy in ("top", "random", "stratified"):
        selection = select_examples(ranked_record, ExampleSelectionConfig(strategy=strategy, num_examples=100))
        assert sorted(ids(selection.examples)) == list(range(1, 41))


def test_stratified_draws_equal_shares_from_each_quantile_bin(ranked_record):
    settings = ExampleSelectionConfig(strategy="stratified", num_examples=8, num_quantiles=4)
    chosen = ids(select_examples(ranked_record, settings).examples)
    # ranks split into bins of 10: activations 40..31, 30..21, 20..11, 10..1 -> two from each
    assert [sum(1 for value in chosen if low <= value <= low + 9) for low in (31, 21, 11, 1)] == [2, 2, 2, 2]
    assert chosen == sorted(chosen, reverse=True)


def test_stratified_remainder_goes_to_the_highest_bins(ranked_record):
    settings = ExampleSelectionConfig(strategy="stratified", num_examples=6, num_quantiles=4)
    chosen = ids(select_examples(ranked_record, settings).examples)
    assert [sum(1 for value in chosen if low <= value <= low + 9) for low in (31, 21, 11, 1)] == [2, 2, 1, 1]


def test_random_draws_only_active_samples_reproducibly(ranked_record):
    settings = ExampleSelectionConfig(strategy="random", num_examples=10, seed=3)
    first = ids(select_examples(ranked_record, settings).examples)
    assert first == ids(select_examples(ranked_record, settings).examples)
    assert all(1 <= value <= 40 for value in first) and len(set(first)) == 10
    assert first != ids(select_examples(ranked_record, settings.model_copy(update={"seed": 4})).examples)
    assert first != list(range(40, 30, -1))


def test_contrast_examples_are_the_least_active_samples_not_shown(ranked_record):
    settings = ExampleSelectionConfig(strategy="top", num_examples=3, contrast_examples=4)
    selection = select_examples(ranked_record, settings)
    # silent samples peak at 0.0 (their max token); sample 100 and the others tie at 0 and keep pool order
    assert set(ids(selection.contrast)) <= set(range(100, 110))
    assert len(selection.contrast) == 4
    assert selection.sample_ids == [40, 39, 38, *ids(selection.contrast)]


def test_contrast_falls_back_to_weakly_active_samples(make_example):
    record = FeatureRecord(
        feature=1,
        top_examples=tuple(make_example(i, ["a", "b"], [0.0, float(i)]) for i in (9, 8, 7, 2, 1)),
    )
    selection = select_examples(record, ExampleSelectionConfig(num_examples=3, contrast_examples=2))
    assert ids(selection.examples) == [9, 8, 7]
    assert ids(selection.contrast) == [1, 2]


def test_crop_keeps_the_window_around_the_max_token(make_example):
    full = make_example(5, ["a", "b", "c", "d", "e", "f"], [0.1, 0.2, 0.3, 9.0, 0.5, 0.6])
    cropped = crop_to_window(full, left=1, right=1)
    assert cropped.tokens == ["c", "d", "e"]
    np.testing.assert_allclose(cropped.activations, [0.3, 9.0, 0.5])
    assert cropped.max_position == 1 and cropped.text == "cde"
    assert crop_to_window(full, left=10, right=0).tokens == ["a", "b", "c", "d"]
    assert crop_to_window(full, None, None) is full


def test_selection_applies_the_context_window(ranked_record):
    settings = ExampleSelectionConfig(num_examples=2, context_left=0, context_right=0)
    assert [example.tokens for example in select_examples(ranked_record, settings).examples] == [["b"], ["b"]]
