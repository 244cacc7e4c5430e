"""Pool examples (stratified / random / contrast material for explainers): right rows, true per-token values."""

import numpy as np
import pytest

from harness.activations import extract_activations
from harness.activations._pool import choose_pool_rows, pool_examples
from harness.config import SiteConfig
from harness.sites import build_site


def test_choose_pool_rows_covers_each_quantile_and_the_least_active():
    column = np.array([0.0, 0.01, -0.5, 1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)
    rows = choose_pool_rows(column[:, None], per_quantile=1, num_quantiles=4, num_low=2, rng=np.random.default_rng(0))[
        0
    ]
    active_by_rank = np.argsort(column)[np.sort(column) > 0]  # rows 3..10 in rank order
    bins = np.array_split(active_by_rank, 4)
    assert all(len(set(rows[:4]) & set(part.tolist())) == 1 for part in bins)
    assert rows[4:].tolist() == [0, 1]  # |0.0| and |0.01| are the least active


def test_choose_pool_rows_with_no_active_sample_keeps_only_contrast():
    rows = choose_pool_rows(-np.ones((5, 1)), per_quantile=3, num_quantiles=4, num_low=2, rng=np.random.default_rng(0))
    assert rows[0].tolist() == [0, 1]


@pytest.mark.slow
def test_pool_examples_match_the_extraction(subject_model, tiny_corpus, engine_config):
    site = build_site(SiteConfig(module="model.layers.3.mlp.act_fn", features=[5, 77]), subject_model)
    activation_set = extract_activations(subject_model, site, tiny_corpus, engine_config, progress=False)
    pools = pool_examples(
        subject_model.tokenizer, tiny_corpus, activation_set, engine_config, per_quantile=2, num_low=3
    )
    assert set(pools) == {5, 77}
    row_of = {int(sample_id): row for row, sample_id in enumerate(activation_set.sample_ids)}
    for feature, examples in pools.items():
        assert 3 <= len(examples) <= 2 * 4 + 3
        column = activation_set.column(feature)
        for example in examples:
            assert example.max_activation == pytest.approx(column[row_of[example.sample_id]], abs=1e-5)
            assert len(example.tokens) == example.activations.size
            assert example.activations[example.max_position] == pytest.approx(example.max_activation, abs=1e-5)
        least = np.sort(np.abs(column))[:3]
        contrast = sorted(abs(example.max_activation) for example in examples)[:3]
        assert contrast == pytest.approx(least.tolist(), abs=1e-5)
