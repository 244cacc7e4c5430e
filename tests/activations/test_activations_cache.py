"""The activation cache: resume after a hard kill, damaged or foreign files rebuilt, nothing written on bad input."""

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.activations import _extract as extract_module
from harness.activations import extract_activations
from harness.activations._store import MANIFEST, ArrayStore
from harness.config import SiteConfig
from harness.errors import CorpusError, SiteError
from harness.sites import build_site

pytestmark = pytest.mark.slow

MODULE = "model.layers.1.mlp.act_fn"
FEATURES = [2, 3, 5, 7, 11, 13]
NUM_SHARDS = 3  # 40 samples in shards of 16

KILLED_AFTER_FIRST_SHARD = """
import json, sys, time
import pandas as pd
import harness.activations._extract as extract
from harness.activations import extract_activations
from harness.config import ActivationConfig, SiteConfig, SubjectModelConfig
from harness.model import load_subject_model
from harness.sites import build_site

commit = extract._commit_shard

def commit_then_hang(*args, **kwargs):
    entries = commit(*args, **kwargs)
    print("shard committed", flush=True)
    time.sleep(600)  # the test kills the process here
    return entries

extract._commit_shard = commit_then_hang
corpus_path, config_json, module, features = sys.argv[1:5]
model = load_subject_model(SubjectModelConfig())
site = build_site(SiteConfig(module=module), model)
config = ActivationConfig.model_validate_json(config_json)
extract_activations(model, site, pd.read_parquet(corpus_path), config, features=json.loads(features), progress=False)
"""


@pytest.fixture(scope="module")
def site(subject_model):
    return build_site(SiteConfig(module=MODULE), subject_model)


@pytest.fixture
def counted_parts(monkeypatch):
    """How many shard shares the engine computes."""
    calls = []
    original = extract_module.extract_part

    def counting(*args, **kwargs):
        calls.append(args[3].size)
        return original(*args, **kwargs)

    monkeypatch.setattr(extract_module, "extract_part", counting)
    return calls


def entry_folder(config) -> Path:
    (folder,) = (Path(config.cache_dir) / "activations").iterdir()
    return folder


def assert_same_result(result, expected):
    np.testing.assert_array_equal(result.feature_ids, expected.feature_ids)
    np.testing.assert_array_equal(result.sample_ids, expected.sample_ids)
    np.testing.assert_allclose(result.per_sample, expected.per_sample, rtol=1e-6, atol=1e-7)
    for feature in expected.feature_ids.tolist():
        got, want = result.top_examples[feature], expected.top_examples[feature]
        assert [e.sample_id for e in got] == [e.sample_id for e in want]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.activations, b.activations, rtol=1e-6, atol=1e-7)
            assert (a.max_position, a.tokens) == (b.max_position, b.tokens)
    rows = range(expected.sample_ids.size)
    np.testing.assert_allclose(result.token_values.read(rows), expected.token_values.read(rows), rtol=1e-6, atol=1e-7)


def test_killed_extraction_resumes_from_the_last_shard(
    subject_model, site, tiny_corpus, engine_config, tmp_path, counted_parts
):
    corpus_path = tmp_path / "corpus.parquet"
    tiny_corpus.to_parquet(corpus_path)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_AFTER_FIRST_SHARD, encoding="utf-8")
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(corpus_path), engine_config.model_dump_json(), MODULE, json.dumps(FEATURES)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
        line = process.stdout.readline()
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert line.strip() == "shard committed", (tmp_path / "stderr.txt").read_text()
    assert process.returncode == -signal.SIGKILL

    folder = entry_folder(engine_config)
    assert len(json.loads((folder / MANIFEST).read_text())["shards"]) == 1
    (folder / ".shard-00001.npz.abc.tmp").write_bytes(b"half a write")  # what a kill during a write leaves

    resumed = extract_activations(subject_model, site, tiny_corpus, engine_config, features=FEATURES, progress=False)
    assert len(counted_parts) == NUM_SHARDS - 1  # only the missing shards ran
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST,
        "shard-00000.npz",
        "shard-00001.npz",
        "shard-00002.npz",
        "tokens-00000.npz",
        "tokens-00001.npz",
        "tokens-00002.npz",
        "top-00002.npz",
    ]

    fresh_config = engine_config.model_copy(update={"cache_dir": str(tmp_path / "fresh")})
    assert_same_result(
        resumed, extract_activations(subject_model, site, tiny_corpus, fresh_config, features=FEATURES, progress=False)
    )


def truncate(folder):
    path = folder / "shard-00001.npz"
    path.write_bytes(path.read_bytes()[:200])


def truncate_kept_tokens(folder):
    path = folder / "tokens-00002.npz"
    path.write_bytes(path.read_bytes()[:-10])


def manifest_of_the_format_before(folder):
    """A cache written before the pass kept per-token values: the same key, no `tokens` files."""
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["tokens"]
    (folder / MANIFEST).write_text(json.dumps(manifest))


def flip_a_byte(folder):
    path = folder / "top-00002.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def foreign_manifest(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "key": "0" * 64}))


def unreadable_manifest(folder):
    (folder / MANIFEST).write_text('{"key": ')


def missing_shard(folder):
    (folder / "shard-00000.npz").unlink()


def shard_of_another_cache(folder):
    """A valid file from another entry, with the manifest's checksum updated to match it."""
    other = folder.parent / "other"
    other.mkdir()
    entry = ArrayStore(other, "f" * 64).write_arrays(
        "shard-00000.npz", {"per_sample": np.zeros((16, len(FEATURES)), np.float32)}
    )
    (other / "shard-00000.npz").replace(folder / "shard-00000.npz")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["shards"][0] = entry
    (folder / MANIFEST).write_text(json.dumps(manifest))
    other.rmdir()


@pytest.mark.parametrize(
    "damage",
    [
        truncate,
        truncate_kept_tokens,
        manifest_of_the_format_before,
        flip_a_byte,
        foreign_manifest,
        unreadable_manifest,
        missing_shard,
        shard_of_another_cache,
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(
    subject_model, site, tiny_corpus, engine_config, counted_parts, caplog, damage
):
    first = extract_activations(subject_model, site, tiny_corpus, engine_config, features=FEATURES, progress=False)
    assert len(counted_parts) == NUM_SHARDS
    damage(entry_folder(engine_config))
    with caplog.at_level(logging.WARNING):
        rebuilt = extract_activations(
            subject_model, site, tiny_corpus, engine_config, features=FEATURES, progress=False
        )
    assert "rebuilding" in caplog.text
    assert len(counted_parts) == 2 * NUM_SHARDS
    assert_same_result(rebuilt, first)
    extract_activations(subject_model, site, tiny_corpus, engine_config, features=FEATURES, progress=False)
    assert len(counted_parts) == 2 * NUM_SHARDS  # the rebuilt entry is used as is


def test_cache_key_follows_results_not_batching(subject_model, site, tiny_corpus, engine_config, counted_parts):
    extract_activations(subject_model, site, tiny_corpus, engine_config, features=FEATURES, progress=False)
    rebatched = engine_config.model_copy(update={"batch_size": 11, "early_exit": False})
    extract_activations(subject_model, site, tiny_corpus, rebatched, features=FEATURES, progress=False)
    assert len(counted_parts) == NUM_SHARDS
    shorter = engine_config.model_copy(update={"max_length": 12})
    extract_activations(subject_model, site, tiny_corpus, shorter, features=FEATURES, progress=False)
    edited = tiny_corpus.assign(text=tiny_corpus["text"].str.upper())
    extract_activations(subject_model, site, edited, engine_config, features=FEATURES, progress=False)
    assert len(counted_parts) == 3 * NUM_SHARDS
    assert len(list((Path(engine_config.cache_dir) / "activations").iterdir())) == 3


def test_bad_input_leaves_no_cache(subject_model, site, tiny_corpus, engine_config):
    with pytest.raises(SiteError, match="out of range"):
        extract_activations(subject_model, site, tiny_corpus, engine_config, features=[1, 99999], progress=False)
    with pytest.raises(CorpusError, match="no samples"):
        extract_activations(subject_model, site, tiny_corpus.iloc[:0], engine_config, progress=False)
    with pytest.raises(CorpusError, match="text"):
        extract_activations(subject_model, site, tiny_corpus.drop(columns="text"), engine_config, progress=False)
    assert not Path(engine_config.cache_dir).exists()
