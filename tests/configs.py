"""The one small pipeline config the end-to-end tests start from, so a change of the config schema is made
once: SmolLM2's layer-3 MLP neurons 5 and 77 on 60 short python-docs samples, the loopback server as the
explainer and the rater (no retries), FADE small and without Faithfulness, caches and the store in the test's
folder. Each test states only what it changes, as dotted settings."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.config import set_dotted

# delphi's and SAEBench's example counts scaled down to a few dozen short samples (their scorers and derivations)
SMALL_CONVENTIONS: dict[str, Any] = {
    "delphi": {"example_ctx_len": 8, "min_examples": 2, "n_examples_test": 6, "n_quantiles": 3},
    "saebench": {
        "buffer": 3,
        "n_top_ex_for_generation": 3,
        "n_iw_sampled_ex_for_generation": 2,
        "n_top_ex_for_scoring": 1,
        "n_iw_sampled_ex_for_scoring": 1,
        "n_random_ex_for_scoring": 3,
    },
}


def tiny_config(folder: Path, server_url: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config as a mapping. `overrides`: dotted setting -> value (`explain.llm.temperature`,
    `fade.faithfulness`: a whole section); `llm` / `llm.<field>` sets both the explainer's and the rater's LLM
    settings / a field of both."""
    llm: dict[str, Any] = {"model": "openai/scripted", "api_base": server_url, "max_retries": 0}
    data: dict[str, Any] = {
        "corpus": {"num_samples": 60, "max_chars": 160, "seed": 5},
        "site": {"module": "model.layers.3.mlp.act_fn", "features": [5, 77]},
        "activations": {
            "batch_size": 16,
            "max_length": 32,
            "skip_first_positions": 1,
            "cache_dir": str(folder / "cache"),
        },
        "explain": {"llm": llm, "selection": {"num_examples": 4}},
        "fade": {"rater": llm, "clarity_llm_calls": 2, "num_samples": 20, "faithfulness": {"enabled": False}},
        "tracking": {"experiment": "probe", "store_dir": str(folder / "mlruns"), "bootstrap_samples": 100},
    }
    data = copy.deepcopy(data)  # the two LLM sections are separate mappings from here on
    for dotted, value in (overrides or {}).items():
        if dotted == "llm" or dotted.startswith("llm."):
            for section in ("explain.llm", "fade.rater"):
                set_dotted(data, section + dotted.removeprefix("llm"), copy.deepcopy(value))
        else:
            set_dotted(data, dotted, value)
    return data


def write_config(folder: Path, data: Mapping[str, Any], name: str = "config.yaml") -> Path:
    """`data` as a YAML config file in `folder`."""
    path = folder / name
    path.write_text(yaml.safe_dump(dict(data)), encoding="utf-8")
    return path
