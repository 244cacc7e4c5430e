"""One tracked `harness run` on N latents of a 16k-latent SAE, stage by stage, against a bare forward pass.

Setup (issue #28): a random 16,384-latent SAE in SAELens' layout (written by this script into a temporary
folder) on the layer-15 residual stream of the embedded SmolLM2-135M (`model.layers.15`, output), 1,000
python-docs samples of at most 64 tokens, the first N latents; the scripted loopback server (in its own
process, no latency) explains and rates; FADE without faithfulness, plus detection and fuzzing; tracked
in a fresh sqlite MLflow store, cold caches. `harness run` runs in its own process (its peak RSS is read
from the children's rusage). Baseline, same run: one bare forward pass (logits included) over the same
corpus in the same batches, and the raw OpenAI SDK's calls/s against the same judge server (400 FADE rating calls
at concurrency 32, its connections open: what a client with no cost of its own would reach).

    python benchmarks/bench_scale.py [--features 64 1000] [--all-traced] [--profile FILE]

`--profile FILE` runs `harness run` under cProfile and writes the stats to FILE (one run: the first N).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from bench_activations import bare_forward
from bench_llm import rating_conversation, start_server
from bench_llm_client import KEY_ENV, time_sdk
from safetensors.numpy import save_file

from harness.config import CorpusConfig, SubjectModelConfig
from harness.corpus import load_corpus
from harness.model import load_subject_model

D_SAE = 16_384
MODULE = "model.layers.15"
BATCH_SIZE = 16
MAX_TOKENS = 64
NUM_SAMPLES = 1000
STAGES = ("activations", "explain", "evaluate", "scorers")


def write_random_sae(folder: Path, d_in: int, seed: int = 0) -> Path:
    """A ReLU SAE with random weights in SAELens' layout (cfg.json + sae_weights.safetensors)."""
    rng = np.random.default_rng(seed)
    weights = {
        "W_enc": rng.normal(size=(d_in, D_SAE)) / np.sqrt(d_in),
        "b_enc": rng.normal(size=D_SAE) * 0.1,
        "W_dec": rng.normal(size=(D_SAE, d_in)) / np.sqrt(D_SAE),
        "b_dec": rng.normal(size=d_in) * 0.1,
    }
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": D_SAE}), encoding="utf-8")
    save_file(
        {name: value.astype(np.float32) for name, value in weights.items()}, str(folder / "sae_weights.safetensors")
    )
    return folder


def make_config(root: Path, sae: Path, api_base: str, features: int, all_traced: bool = False) -> dict:
    llm = {"model": "openai/scripted", "api_base": api_base}
    sample = {"trace_sample": {"share": 1.0, "first_features": features}} if all_traced else {}
    return {
        "name": "bench-scale",
        "corpus": {"source": "python-docs", "num_samples": NUM_SAMPLES, "max_tokens": MAX_TOKENS},
        "model": {"name": "smollm2-135m"},
        "site": {
            "kind": "sae",
            "module": MODULE,
            "hook": "output",
            "sae": {"path": str(sae)},
            "features": {"start": 0, "stop": features},
        },
        "activations": {"batch_size": BATCH_SIZE, "max_length": MAX_TOKENS, "cache_dir": str(root / "cache")},
        "explain": {"llm": llm},
        "fade": {"rater": llm, "faithfulness": {"enabled": False}},
        "scorers": {"enabled": ["detection", "fuzzing"]},
        "tracking": {"experiment": "bench-scale", "store_dir": str(root / "mlruns"), **sample},
    }


def run_metrics(store: Path) -> dict[str, float]:
    """The metrics of the one run in the sqlite store (latest value of each)."""
    with sqlite3.connect(store / "mlflow.db") as db:
        rows = db.execute("SELECT key, value FROM latest_metrics").fetchall()
    return dict(rows)


def store_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def harness_run(root: Path, config: dict, profile: str | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of `harness run` in its own process."""
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "harness"]
    command += ["run", str(path), "--quiet"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=root, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 2**20


def bare_forward_seconds() -> float:
    loaded = load_subject_model(SubjectModelConfig())
    corpus = load_corpus(CorpusConfig(num_samples=NUM_SAMPLES, max_tokens=MAX_TOKENS), loaded.tokenizer)
    texts = corpus["text"].tolist()
    batches = [texts[start : start + BATCH_SIZE] for start in range(0, len(texts), BATCH_SIZE)]
    start = time.perf_counter()
    bare_forward(loaded, batches, MAX_TOKENS)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, nargs="+", default=[64, 1000], help="latents per run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare forward pass (minutes on a CPU)")
    parser.add_argument("--profile", help="cProfile stats file of `harness run` (first --features value only)")
    parser.add_argument(
        "--all-traced", action="store_true", help="trace every feature's calls (tracking.trace_sample.share 1)"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; bare forward over {NUM_SAMPLES} samples ...", flush=True)
    bare = float("nan") if args.no_baseline else bare_forward_seconds()
    rows = []
    server, api_base = start_server(0.0)
    os.environ.setdefault(KEY_ENV, "bench-not-a-secret")
    try:
        sdk_calls = 400
        sdk_per_s = sdk_calls / time_sdk(api_base, [rating_conversation(call) for call in range(sdk_calls)], 32)[0]
        for index, features in enumerate(args.features):
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
                root = Path(folder)
                sae = write_random_sae(root / "sae", d_in=576)
                config = make_config(root, sae, api_base, features, args.all_traced)
                profile = args.profile if index == 0 else None
                wall, peak_gib = harness_run(root, config, profile)
                metrics = run_metrics(root / "mlruns")
                calls = metrics.get("llm_calls", float("nan"))
                rows.append(
                    {
                        "features": features,
                        "wall": wall,
                        **{stage: metrics.get(f"time_{stage}_s", float("nan")) for stage in STAGES},
                        "calls": calls,
                        "calls_per_s": calls / sum(metrics.get(f"time_{stage}_s", 0.0) for stage in STAGES[1:]),
                        "store_per_feature": store_bytes(root / "mlruns") / features,
                        "cache_per_feature": store_bytes(root / "cache") / features,
                        "peak_gib": peak_gib,
                    }
                )
                print(f"N={features}: {wall:.1f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        server.kill()
        server.wait()
    print(f"\nbare forward pass over {NUM_SAMPLES} samples (batches of {BATCH_SIZE}): {bare:.1f} s")
    print(f"raw OpenAI SDK against the same judge server: {sdk_per_s:.0f} calls/s (concurrency 32)")
    traced = "every feature traced" if args.all_traced else "traces sampled (the default)"
    print(f"MLflow store per feature: {traced}")
    print("| N | harness run | activations | explain | FADE (s/feature) | scorers | LLM calls (calls/s) | MLflow store per feature | cache per feature | peak RSS |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['features']:,} | {row['wall']:.0f} s | {row['activations']:.1f} s (bare pass / this: {bare / row['activations']:.1f}x) "
            f"| {row['explain']:.1f} s | {row['evaluate']:.1f} s ({row['evaluate'] / row['features']:.3f}) "
            f"| {row['scorers']:.1f} s | {row['calls']:,.0f} ({row['calls_per_s']:.0f}/s) "
            f"| {row['store_per_feature'] / 1e3:.1f} kB | {row['cache_per_feature'] / 1e3:.1f} kB | {row['peak_gib']:.2f} GiB |"
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
