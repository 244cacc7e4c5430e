"""Two processes filling the same activation cache entry at once (search workers on a cold cache) both succeed."""

import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import sys, numpy as np
from harness.config import ActivationConfig, CorpusConfig, SiteConfig, SubjectModelConfig
from harness.activations import activations_for_texts, extract_activations
from harness.corpus import load_corpus
from harness.model import load_subject_model
from harness.sites import build_site
cache, out = sys.argv[1], sys.argv[2]
model = load_subject_model(SubjectModelConfig())
config = ActivationConfig(batch_size=4, max_length=24, top_k=3, shard_size=4, cache_dir=cache)
site = build_site(SiteConfig(module="model.layers.2.mlp.act_fn", features=[1, 2, 3]), model)
corpus = load_corpus(CorpusConfig(num_samples=160, max_chars=120, seed=11))
result = extract_activations(model, site, corpus, config, progress=False)
texts = activations_for_texts(model, site, ["def f(x):", "The dog barked."] * 8, [1, 2, 3], config, cache=True)
np.savez(out, per_sample=result.per_sample, texts=texts)
"""


@pytest.mark.slow
def test_concurrent_extractions_of_one_entry_agree(tmp_path):
    cache = tmp_path / "cache"
    outputs = [tmp_path / f"out{i}.npz" for i in range(2)]
    workers = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), str(out)], stderr=subprocess.PIPE, text=True)
        for out in outputs
    ]
    logs = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
        logs.append(stderr)
    first, second = (np.load(out) for out in outputs)
    np.testing.assert_array_equal(first["per_sample"], second["per_sample"])
    np.testing.assert_array_equal(first["texts"], second["texts"])
    assert not any("unusable" in log for log in logs), "a worker took the other's half-built entry for damaged"
