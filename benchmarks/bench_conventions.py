"""What the delphi convention and the saebench scorer add: their activation passes' memory and time, and scorer time.

Site: a random ReLU SAE (`--latents`, default 1024) on SmolLM2-135M's `model.layers.15` residual stream, its
encoder biases set so each latent fires on about `--density` of the tokens (an SAE's sparsity, not its
meaning); python-docs samples (`--samples`, max_length 128). Measured in one run:
  extraction      the activation engine (the pass every convention needs), its wall time
  delphi windows  SharedStages.delphi_windows: a read of the kept per-token values keeping each active (window,
                  latent) pair, then one of the chosen windows' samples; wall time, tracemalloc peak, the pairs it kept
  saebench        saebench_examples: every latent's per-token activations at once (from the kept values); wall
                  time, tracemalloc peak
  scorers         detection and fuzzing in each convention on `--features` latents, through the loopback
                  server's scripted rater with a fixed latency (100 ms), concurrency 16, empty cache

    python benchmarks/bench_conventions.py [--latents 1024] [--samples 300] [--features 16] [--density 0.03]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from _loopback import start_loopback_process
from safetensors.numpy import save_file

from harness.activations import delphi_windows, extract_activations, pool_examples, saebench_examples
from harness.config import LLMConfig, ScorersConfig, parse_config
from harness.corpus import load_corpus
from harness.evaluate.scorers import run_scorers
from harness.explain import build_feature_records
from harness.llm import LLMClient
from harness.model import load_subject_model
from harness.sites import build_site

MODULE = "model.layers.15"


def random_sae(folder: Path, loaded, texts: list[str], latents: int, density: float) -> Path:
    """A ReLU SAE with random unit encoder columns, each bias at the (1 - density) quantile of its pre-activation."""
    hidden = loaded.model.config.hidden_size
    rng = np.random.default_rng(0)
    W_enc = rng.normal(size=(hidden, latents)).astype(np.float32)
    W_enc /= np.linalg.norm(W_enc, axis=0)
    states = []
    captured = {}
    module = loaded.model.get_submodule(MODULE)
    handle = module.register_forward_hook(
        lambda _m, _i, out: captured.update(h=out[0] if isinstance(out, tuple) else out)
    )
    with torch.inference_mode():
        for text in texts[:32]:
            loaded.model(**loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=128))
            states.append(captured["h"][0].float().numpy())
    handle.remove()
    pre = np.concatenate(states) @ W_enc
    b_enc = -np.quantile(pre, 1 - density, axis=0).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps({"d_in": hidden, "d_sae": latents, "architecture": "standard"}))
    weights = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_enc.T.copy(), "b_dec": np.zeros(hidden, dtype=np.float32)}
    save_file(
        {name: np.ascontiguousarray(value) for name, value in weights.items()}, str(folder / "sae_weights.safetensors")
    )
    return folder


def timed(work):
    tracemalloc.start()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--density", type=float, default=0.03)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = parse_config({"corpus": {"num_samples": args.samples}})
        loaded = load_subject_model(base.model)
        corpus = load_corpus(base.corpus, loaded.tokenizer)
        sae = random_sae(Path(folder) / "sae", loaded, corpus["text"].tolist(), args.latents, args.density)
        config = parse_config(
            {
                "corpus": {"num_samples": args.samples},
                "site": {"kind": "sae", "module": MODULE, "sae": {"path": str(sae)}},
                "activations": {"max_length": 128, "cache_dir": os.path.join(folder, "cache")},
            }
        )
        site = build_site(config.site, loaded)
        activations = config.activations
        activation_set, extract_s, extract_peak = timed(
            lambda: extract_activations(loaded, site, corpus, activations, progress=False)
        )
        delphi = ScorersConfig().delphi
        windows, windows_s, windows_peak = timed(
            lambda: delphi_windows(loaded.tokenizer, corpus, activation_set, activations, delphi, progress=False)
        )
        _, saebench_s, saebench_peak = timed(
            lambda: saebench_examples(
                loaded.tokenizer, corpus, activation_set, activations, ScorersConfig().saebench, progress=False
            )
        )
        pairs = sum(sample.num_active for sample in windows.values())
        num_windows = next(iter(windows.values())).num_windows
        scored = [feature for feature, sample in windows.items() if sample.test][: args.features]
        print(f"{args.latents} latents, {args.samples} samples, {num_windows} windows of 32 tokens")
        print("| pass | wall | tracemalloc peak |\n| --- | --- | --- |")
        print(f"| extraction | {extract_s:.1f} s | {extract_peak / 2**20:.1f} MiB |")
        print(f"| delphi windows | {windows_s:.1f} s | {windows_peak / 2**20:.1f} MiB |")
        held = args.samples * activations.max_length * args.latents * 4  # a torch tensor: tracemalloc does not see it
        print(
            f"| saebench examples | {saebench_s:.1f} s | {saebench_peak / 2**20:.1f} MiB + {held / 2**20:.1f} MiB held |"
        )
        print(
            f"active (window, latent) pairs: {pairs} ({pairs / num_windows:.0f} per window, {pairs * 12 / 2**20:.2f} MiB "
            f"at 12 bytes); latents with >= 200 active windows: {sum(1 for s in windows.values() if s.test)}"
        )
        pools = pool_examples(loaded.tokenizer, corpus, activation_set, activations, num_low=30)
        records = [r for r in build_feature_records(activation_set, pools, windows) if r.feature in scored]
        descriptions = {record.feature: "the word 'the'" for record in records}
        code = (
            "from harness.testing.loopback import FaultPlan, LoopbackServer\n"
            "from harness.testing.responders import FadeResponder\n"
            f"server = LoopbackServer(FadeResponder(), FaultPlan(latency_s={args.latency}))\n"
            "print(server.url, flush=True)\nserver.serve_forever()\n"
        )
        process, url = start_loopback_process(code)
        try:
            print("| convention | scorer | calls/feature | wall |\n| --- | --- | --- | --- |")
            for convention in ("harness", "delphi"):
                for name in ("detection", "fuzzing"):
                    cache = os.path.join(folder, f"{convention}-{name}.sqlite")
                    client = LLMClient(
                        LLMConfig(model="openai/scripted", api_base=url, concurrency=16, cache_path=cache),
                        progress=False,
                    )
                    scorers = ScorersConfig(enabled=[name], convention=convention)
                    start = time.perf_counter()
                    run_scorers(records, descriptions, scorers, client, progress=False)
                    wall = time.perf_counter() - start
                    print(f"| {convention} | {name} | {client.usage.requests / len(records):.1f} | {wall:.2f} s |")
                    client.close()
        finally:
            process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
