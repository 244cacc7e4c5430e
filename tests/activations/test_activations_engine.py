"""Engine parts: per-sample reduction, streaming top-k, process sharding, new texts, the report."""

import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.activations import _texts as texts_module
from harness.activations import activations_for_texts, extract_activations, top_examples_report
from harness.activations._extract import extract_part
from harness.activations._processes import Processes
from harness.activations._reduce import TopExamples, max_abs_per_sample, valid_token_mask
from harness.activations._report import mark_max_token
from harness.activations._tokens import join_parts
from harness.config import SiteConfig
from harness.sites import build_site


def test_per_sample_value_is_signed_at_largest_magnitude():
    token_acts = torch.tensor([[[1.0, 0.5], [-3.0, 0.25], [2.0, -0.125]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, True], [False, False, False]])
    values, positions = max_abs_per_sample(token_acts, valid)
    assert values.tolist() == [[-3.0, 0.5], [0.0, 0.0]]
    assert positions[0].tolist() == [1, 0]
    # an ignored position never wins, even with the largest magnitude
    token_acts[0, 0] = torch.tensor([9.0, -9.0])
    values, positions = max_abs_per_sample(token_acts, torch.tensor([[False, True, True]] * 2))
    assert values[0].tolist() == [-3.0, 0.25] and positions[0].tolist() == [1, 1]


def test_valid_token_mask_drops_padding_specials_and_first_positions():
    ids = torch.tensor([[5, 0, 7, 8], [9, 10, 2, 2]])
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert valid_token_mask(ids, attention, [0, 2], False, 0).tolist() == [[True] * 4, [True, True, False, False]]
    assert valid_token_mask(ids, attention, [0, 2], True, 1).tolist() == [
        [False, False, True, True],
        [False, True, False, False],
    ]


def test_streaming_top_k_is_the_same_in_any_grouping():
    rng = np.random.default_rng(0)
    num_features, num_rows, k, tokens = 5, 37, 6, 4
    values = rng.normal(size=(num_rows, num_features)).astype(np.float32)
    values[3] = values[9]  # exact ties are broken by row
    token_acts = rng.normal(size=(num_rows, tokens, num_features)).astype(np.float32)
    positions = rng.integers(0, tokens, size=(num_rows, num_features))

    def stream(groups):
        state = TopExamples.empty(num_features, k, tokens)
        for rows in groups:
            part = TopExamples.empty(num_features, k, tokens)
            part.merge_batch(
                torch.from_numpy(values[rows]),
                torch.from_numpy(positions[rows]),
                torch.from_numpy(token_acts[rows]),
                rows,
            )
            state.merge_top(part)
        return state

    one = stream([np.arange(num_rows)])
    many = stream(np.array_split(rng.permutation(num_rows), 7))
    expected_rows = np.stack([np.lexsort((np.arange(num_rows), -values[:, f]))[:k] for f in range(num_features)])
    for state in (one, many):
        np.testing.assert_array_equal(state.rows, expected_rows)
        np.testing.assert_array_equal(state.values, np.take_along_axis(values.T, expected_rows, axis=1))
        np.testing.assert_array_equal(state.positions, np.take_along_axis(positions.T, expected_rows, axis=1))
        for f in range(num_features):
            np.testing.assert_array_equal(state.token_acts[f], token_acts[expected_rows[f], :, f])


def test_fewer_samples_than_k_leaves_empty_slots():
    state = TopExamples.empty(2, 5, 3)
    state.merge_batch(torch.tensor([[1.0, 2.0]]), torch.tensor([[0, 1]]), torch.zeros((1, 3, 2)), np.array([4]))
    assert state.rows.tolist() == [[4, -1, -1, -1, -1], [4, -1, -1, -1, -1]]


@pytest.mark.slow
def test_two_process_shares_gather_to_the_single_process_result(subject_model, tiny_corpus, engine_config):
    site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn"), subject_model)
    features = torch.arange(0, 1536, 7)
    texts = tiny_corpus["text"].tolist()
    rows = np.arange(3, 31)  # one shard's rows
    single_values, single_top, single_tokens = extract_part(subject_model, site, texts, rows, features, engine_config)

    processes = [Processes(process_index=index, num_processes=2) for index in range(2)]
    shares = [group.split(rows) for group in processes]
    assert [share.tolist() for share in shares] == [list(range(3, 17)), list(range(17, 31))]
    parts = [extract_part(subject_model, site, texts, share, features, engine_config) for share in shares]
    gathered_values = np.concatenate([values for values, _, _ in parts])
    gathered_top = TopExamples.empty(features.numel(), engine_config.top_k, engine_config.max_length)
    for _, top, _ in parts:
        gathered_top.merge_top(top)
    gathered_tokens = join_parts([tokens for _, _, tokens in parts])

    np.testing.assert_allclose(gathered_values, single_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(gathered_top.rows, single_top.rows)
    np.testing.assert_allclose(gathered_top.token_acts, single_top.token_acts, rtol=1e-5, atol=1e-6)
    for name in ("lengths", "counts", "positions", "columns"):
        np.testing.assert_array_equal(gathered_tokens[name], single_tokens[name])
    np.testing.assert_allclose(gathered_tokens["values"], single_tokens["values"], rtol=1e-5, atol=1e-6)
    assert single_tokens["lengths"].size == rows.size and single_tokens["counts"].sum() == single_tokens["values"].size


@pytest.mark.slow
def test_new_texts_get_the_same_activations_as_the_corpus(subject_model, tiny_corpus, engine_config, monkeypatch):
    site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn"), subject_model)
    features = [4, 1000]
    corpus_result = extract_activations(
        subject_model, site, tiny_corpus, engine_config, features=features, progress=False
    )
    texts = tiny_corpus["text"].tolist()[5:18]
    values = activations_for_texts(subject_model, site, texts, features, engine_config)
    np.testing.assert_allclose(values, corpus_result.per_sample[5:18], rtol=1e-5, atol=1e-6)
    assert activations_for_texts(subject_model, site, [], features, engine_config).shape == (0, 2)

    cached = activations_for_texts(subject_model, site, texts, features, engine_config, cache=True)
    np.testing.assert_array_equal(cached, values)
    monkeypatch.setattr(texts_module, "forward_batch", lambda *args: pytest.fail("a cached result was recomputed"))
    np.testing.assert_array_equal(
        activations_for_texts(subject_model, site, texts, features, engine_config, cache=True), cached
    )


@pytest.mark.slow
def test_report_marks_the_max_token(subject_model, tiny_corpus, engine_config):
    site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn"), subject_model)
    result = extract_activations(subject_model, site, tiny_corpus, engine_config, features=[30, 31, 32], progress=False)
    report = top_examples_report(result, n_features=2, n_examples=3)
    lines = report.splitlines()
    assert lines[0].startswith("feature 30: max |activation|") and len(lines) == 2 * (1 + 3)
    assert "feature 32" not in report
    best = result.top_examples[31][0]
    marked = mark_max_token(best)
    assert f"   1. {best.max_activation:+.4g}  sample {best.sample_id}: {marked}" in lines
    assert marked.count("«") == 1 and f"«{best.tokens[best.max_position]}»".replace("\n", "⏎") in marked
    assert abs(best.activations[best.max_position]) == np.abs(best.activations).max()


TWO_PROCESS_WORKER = """
import json, sys
import numpy as np
import pandas as pd
from harness.activations import extract_activations
from harness.activations._processes import current_processes
from harness.config import ActivationConfig, SiteConfig, SubjectModelConfig
from harness.model import load_subject_model
from harness.sites import build_site

corpus_path, config_json, out_folder = sys.argv[1:4]
processes = current_processes()
model = load_subject_model(SubjectModelConfig())
site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn", features=list(range(0, 1536, 9))), model)
result = extract_activations(model, site, pd.read_parquet(corpus_path), ActivationConfig.model_validate_json(config_json), progress=False)
tops = [[example.sample_id for example in result.top_examples[f]] for f in result.feature_ids.tolist()]
np.savez(f"{out_folder}/process-{processes.process_index}-of-{processes.num_processes}.npz", per_sample=result.per_sample, tops=np.array(tops))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="two processes on one GPU; this check runs on CPU over gloo")
def test_accelerate_launch_with_two_processes_gathers_the_single_process_result(
    subject_model, tiny_corpus, engine_config, tmp_path
):
    corpus_path = tmp_path / "corpus.parquet"
    tiny_corpus.to_parquet(corpus_path)
    (tmp_path / "worker.py").write_text(TWO_PROCESS_WORKER, encoding="utf-8")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]  # fmt: skip
    completed = subprocess.run(
        [*launch, str(tmp_path / "worker.py"), str(corpus_path), engine_config.model_dump_json(), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]

    site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn", features=list(range(0, 1536, 9))), subject_model)
    single_config = engine_config.model_copy(update={"cache_dir": str(tmp_path / "single")})
    single = extract_activations(subject_model, site, tiny_corpus, single_config, progress=False)
    single_tops = [[example.sample_id for example in single.top_examples[f]] for f in single.feature_ids.tolist()]
    for index in range(2):
        launched = np.load(tmp_path / f"process-{index}-of-2.npz")
        np.testing.assert_allclose(launched["per_sample"], single.per_sample, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(launched["tops"], single_tops)
