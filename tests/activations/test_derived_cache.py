"""Pools, delphi's windows and SAEBench's examples on disk next to the activation cache: the same examples as
deriving them again makes, no forward pass besides the activation pass's, and a later run (a fresh SharedStages,
as another process or run has) reads them without a pass."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from configs import SMALL_CONVENTIONS
from harness.activations import (
    ActivatingExample,
    ActivationSet,
    cached_derivation,
    delphi_windows,
    pool_examples,
    saebench_examples,
)
from harness.activations._derived import decode_groups, encode_groups
from harness.config import parse_config
from harness.stages import SharedStages


def _config(tmp_path):
    return parse_config(
        {
            "corpus": {"num_samples": 40, "max_chars": 120, "seed": 7},
            "site": {"module": "model.layers.3.mlp.act_fn", "features": [5, 77]},
            "activations": {"batch_size": 6, "max_length": 24, "top_k": 4, "cache_dir": str(tmp_path / "cache")},
            "scorers": {
                "enabled": ["saebench"],
                **SMALL_CONVENTIONS,
            },
        }
    )


def _same(left, right) -> bool:
    """Equal to the bit: every example field, arrays with their dtype."""
    if isinstance(left, ActivatingExample):
        return all(
            np.array_equal(a, b) and a.dtype == b.dtype if isinstance(a, np.ndarray) else a == b and type(a) is type(b)
            for a, b in zip(dataclasses.astuple(left), dataclasses.astuple(right))
        )
    if dataclasses.is_dataclass(left):
        return type(left) is type(right) and all(
            _same(getattr(left, name.name), getattr(right, name.name)) for name in dataclasses.fields(left)
        )
    if isinstance(left, dict):
        return list(left) == list(right) and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    return left == right


def test_examples_survive_the_round_trip_to_the_bit():
    odd = ActivatingExample(
        sample_id=7,
        text="naïve\x00 text ",
        tokens=["na", "ïve", "\x00", " text", " "],
        activations=np.array([0.1, -2.5, 0.0, 3.25, 1e-8], dtype=np.float32),
        max_activation=3.25,
        max_position=3,
        ignored_positions=(2,),
    )
    empty = dataclasses.replace(
        odd, text="", tokens=[], activations=np.zeros(0, dtype=np.float32), ignored_positions=()
    )
    groups = [[odd, empty], [], [empty]]
    assert _same(decode_groups(encode_groups(groups)), groups)
    assert not _same(decode_groups(encode_groups([[odd]])), [[dataclasses.replace(odd, max_position=2)]])


@pytest.mark.slow
def test_a_later_run_reads_the_cached_examples_without_a_pass(tmp_path, subject_model):
    config = _config(tmp_path)
    passes = []  # forward passes over texts (a site probes its width with one token: not counted)
    hook = subject_model.model.get_submodule("model.layers.0").register_forward_hook(
        lambda _module, args, _output: passes.append(1) if args[0].shape[1] > 1 else None
    )
    try:
        first = SharedStages(progress=False)
        built = (first.pools(config), first.delphi_windows(config), first.saebench_examples(config))
        batch_size = config.activations.batch_size
        assert len(passes) == -(-40 // batch_size)  # the cold cache: the activation pass only, batch by batch
        tokenizer, corpus, activation_set = (
            first.model(config).tokenizer,
            first.corpus(config),
            first.activations(config),
        )
        # in memory, no cache: the same examples to the bit, and still no forward pass
        passes.clear()
        uncached = (
            pool_examples(tokenizer, corpus, activation_set, config.activations),
            delphi_windows(tokenizer, corpus, activation_set, config.activations, config.scorers.delphi, progress=False),
            saebench_examples(tokenizer, corpus, activation_set, config.activations, config.scorers.saebench, progress=False),
        )  # fmt: skip
        assert passes == []
        assert _same(built, uncached)
        assert all(len(part) == 2 for part in built)  # both features have pools, windows and SAEBench examples

        passes.clear()
        later = SharedStages(progress=False)  # another process or run: nothing in memory
        read = (later.pools(config), later.delphi_windows(config), later.saebench_examples(config))
        assert passes == []  # no forward pass at all: activations and derived examples come from disk
        assert _same(read, built)
    finally:
        hook.remove()
    for kind in ("pools", "delphi-windows", "saebench"):
        assert len(list((tmp_path / "cache" / kind).glob("*/values.npz"))) == 1


@pytest.mark.slow
def test_other_settings_make_another_entry(tmp_path, subject_model):
    config = _config(tmp_path)
    shared = SharedStages(progress=False)
    few = shared.pools(config, per_quantile=1, num_low=2)
    more = SharedStages(progress=False).pools(config, per_quantile=3, num_low=2)
    assert len(list((tmp_path / "cache" / "pools").iterdir())) == 2
    assert all(len(few[feature]) < len(more[feature]) for feature in few)


def test_a_set_without_a_cache_key_is_not_cached(tmp_path):
    activation_set = ActivationSet(feature_ids=np.array([3]), sample_ids=np.array([0]), per_sample=np.zeros((1, 1)))
    built = []
    for _ in range(2):
        cached_derivation(tmp_path, "pools", activation_set, {}, lambda: built.append(1) or {})
    assert built == [1, 1] and not (tmp_path / "pools").exists()
    keyed = dataclasses.replace(activation_set, cache_key="k" * 64)
    for _ in range(2):
        cached_derivation(tmp_path, "pools", keyed, {}, lambda: built.append(1) or {3: []})
    assert built == [1, 1, 1]
