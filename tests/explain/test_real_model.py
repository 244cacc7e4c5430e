"""Explainers on records read from the real subject model (a forward hook on one MLP), end to end."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.activations.types import ActivatingExample
from harness.config import ExplainConfig, SubjectModelConfig
from harness.explain import FeatureRecord, build_prompt, generate_descriptions, load_template
from harness.llm.client import LLMClient
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer

MODULE = "model.layers.3.mlp.act_fn"
TEXTS = [
    "The for loop iterates over the items of any sequence, in order.",
    "def greet(name):\n    return f'Hello, {name}!'",
    "Dictionaries map keys to values; use dict.get() for a default.",
    "Exceptions are raised with the raise statement and caught with try/except.",
    "A list comprehension builds a new list: [x * 2 for x in range(10)].",
    "The with statement closes the file even when an error occurs.",
    "Strings are immutable, so str.replace() returns a new string.",
    "import os\nprint(os.getcwd())",
    "Generators yield values lazily, one at a time.",
    "Classes bundle data and functionality together.",
]


def hooked_activations(loaded, texts: list[str]) -> tuple[list[list[str]], list[np.ndarray]]:
    """Decoded tokens and the MLP activations (tokens x neurons) of each text, via a forward hook."""
    import torch

    module = loaded.model.get_submodule(MODULE)
    captured: list[np.ndarray] = []
    handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output[0].float().cpu().numpy()))
    tokens = []
    try:
        with torch.no_grad():
            for text in texts:
                ids = loaded.tokenizer(text, return_tensors="pt").input_ids.to(loaded.device)
                loaded.model(ids)
                tokens.append([loaded.tokenizer.decode([token]) for token in ids[0].tolist()])
    finally:
        handle.remove()
    return tokens, captured


@pytest.fixture(scope="module")
def real_records() -> list[FeatureRecord]:
    loaded = load_subject_model(SubjectModelConfig())
    tokens, activations = hooked_activations(loaded, TEXTS)
    peak = np.max([values.max(axis=0) for values in activations], axis=0)
    records = []
    for neuron in np.argsort(-peak)[:3].tolist():
        examples = []
        for sample_id, (sample_tokens, values) in enumerate(zip(tokens, activations)):
            column = values[:, neuron].astype(np.float32)
            position = int(np.argmax(np.abs(column)))
            examples.append(
                ActivatingExample(sample_id, TEXTS[sample_id], sample_tokens, column, float(column[position]), position)
            )
        examples.sort(key=lambda example: -example.max_activation)
        records.append(FeatureRecord(feature=neuron, top_examples=tuple(examples[:6]), pool=tuple(examples[6:])))
    return records


@pytest.mark.slow
def test_highlights_in_real_prompts_match_the_hooked_activations(real_records):
    config = ExplainConfig.model_validate({"selection": {"num_examples": 5}})
    for record in real_records:
        prompt = build_prompt(record, config, load_template("delphi"))
        lines = re.findall(r"^Example \d+: (.*)$", prompt.messages[-1]["content"], re.MULTILINE)
        assert len(lines) == 5
        threshold = config.display.highlight_threshold * record.max_token_activation()
        highlighted_any = False
        for line, example in zip(lines, record.top_examples):
            marked = "".join(re.findall(r"<<(.*?)>>", line))
            expected = "".join(token for token, value in zip(example.tokens, example.activations) if value >= threshold)
            assert marked.replace(" ", "") == expected.replace(" ", "").replace("\n", "\\n")
            if example.activations.max() >= threshold:
                highlighted_any = True
                assert example.tokens[int(np.argmax(example.activations))].strip() in marked
        assert highlighted_any


@pytest.mark.slow
def test_real_records_through_both_explainers(real_records, tmp_path, monkeypatch):
    top = generate_descriptions(real_records, ExplainConfig(explainer="top-tokens"))
    for record, description in zip(real_records, top["description"]):
        strongest = record.top_examples[0]
        assert strongest.tokens[strongest.max_position].strip() in description
    monkeypatch.setenv("EXPLAIN_REAL_KEY", "k")
    with LoopbackServer() as server:
        config = ExplainConfig.model_validate(
            {"llm": {"model": "openai/scripted", "api_base": server.url, "api_key_env": "EXPLAIN_REAL_KEY"}}
        )
        table = generate_descriptions(real_records, config, LLMClient(config.llm, cache_dir=tmp_path, progress=False))
        assert server.requests == len(real_records)
    assert table["error"].isna().all()
    assert all(text.startswith("the token ") for text in table["description"])
