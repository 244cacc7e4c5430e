"""Throughput of the activation engine against a bare forward pass and FADE's per-feature loop.

Measured in one run on the embedded SmolLM2-135M (CPU unless a GPU is present), same batches for all:
  bare         one full forward pass per batch (logits included), nothing read
  engine       extract_activations for ALL neurons of a middle layer (early exit, streaming top-k,
               cache written to a fresh temporary folder)
  per-feature  the FADE reference's way: one full forward pass per feature; timed for a few features
               on a few batches and scaled to the asked feature count and the whole corpus

    python benchmarks/bench_activations.py [--samples 96] [--loop-features 32] [--timed-loop-features 4]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc

import torch

from harness.activations import extract_activations, tokenize
from harness.config import ActivationConfig, CorpusConfig, SiteConfig, SubjectModelConfig
from harness.corpus import load_corpus
from harness.model import load_subject_model
from harness.sites import build_site, input_device

TARGET_VS_BARE = 1.0
TARGET_VS_LOOP = 20.0


def bare_forward(loaded, batches, max_length):
    device = input_device(loaded)
    for texts in batches:
        encoded = tokenize(loaded.tokenizer, texts, max_length)
        with torch.inference_mode():
            loaded.model(input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device))


def per_feature_loop(loaded, module_path, features, batches, max_length):
    """FADE reference style: for each feature, a full pass over the batches reading that one neuron."""
    module = loaded.model.get_submodule(module_path)
    device = input_device(loaded)
    for feature in features:
        captured = {}
        handle = module.register_forward_hook(
            lambda _m, _a, out, into=captured, f=feature: into.__setitem__("acts", out[..., f])
        )
        try:
            for texts in batches:
                encoded = tokenize(loaded.tokenizer, texts, max_length)
                mask = encoded["attention_mask"].to(device)
                with torch.inference_mode():
                    loaded.model(input_ids=encoded["input_ids"].to(device), attention_mask=mask)
                acts = captured["acts"].masked_fill(mask == 0, 0.0)
                best = acts.abs().argmax(dim=1, keepdim=True)
                acts.gather(1, best).cpu().numpy()
        finally:
            handle.remove()


def timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--module", default="model.layers.15.mlp.act_fn")
    parser.add_argument("--loop-features", type=int, default=32, help="feature count the per-feature loop is scaled to")
    parser.add_argument("--timed-loop-features", type=int, default=4, help="features actually timed in the loop")
    parser.add_argument("--timed-loop-batches", type=int, default=2, help="batches actually timed in the loop")
    parser.add_argument("--repeats", type=int, default=2, help="bare and engine runs, alternated; the fastest counts")
    args = parser.parse_args(argv)

    loaded = load_subject_model(SubjectModelConfig())
    corpus = load_corpus(CorpusConfig(num_samples=args.samples))
    texts = corpus["text"].tolist()
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    site = build_site(SiteConfig(module=args.module), loaded)
    print(f"model {loaded.identity} on {loaded.device}, torch threads {torch.get_num_threads()}")
    print(f"corpus {len(texts)} samples, {len(batches)} batches of {args.batch_size}, max_length {args.max_length}")
    print(f"site {site.module_path}: all {site.num_features} features")

    bare_forward(loaded, batches[:1], args.max_length)  # warm-up
    bare_runs, engine_runs = [], []
    for _ in range(args.repeats):  # alternated, so that load from other processes hits both alike
        bare_runs.append(timed(bare_forward, loaded, batches, args.max_length))
        with tempfile.TemporaryDirectory() as cache_dir:
            config = ActivationConfig(batch_size=args.batch_size, max_length=args.max_length, cache_dir=cache_dir)
            tracemalloc.start()
            start = time.perf_counter()
            result = extract_activations(loaded, site, corpus, config, features="all", progress=False)
            engine_runs.append(time.perf_counter() - start)
            _, engine_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            cached_s = timed(extract_activations, loaded, site, corpus, config, "all", False)
    bare_s, engine_s = min(bare_runs), min(engine_runs)
    assert result.per_sample.shape == (len(texts), site.num_features)

    timed_batches = batches[: args.timed_loop_batches]
    loop_features = list(range(args.timed_loop_features))
    loop_timed_s = timed(per_feature_loop, loaded, args.module, loop_features, timed_batches, args.max_length)
    timed_samples = sum(len(batch) for batch in timed_batches)
    loop_s = loop_timed_s * (args.loop_features / len(loop_features)) * (len(texts) / timed_samples)

    throughput = {
        name: len(texts) / seconds for name, seconds in [("bare", bare_s), ("engine", engine_s), ("loop", loop_s)]
    }
    vs_bare = throughput["engine"] / throughput["bare"]
    vs_loop = loop_s / engine_s
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"runs (s): bare {', '.join(f'{t:.2f}' for t in bare_runs)}; engine {', '.join(f'{t:.2f}' for t in engine_runs)}"
    )
    print(f"bare full forward        {bare_s:8.2f} s  {throughput['bare']:8.2f} samples/s")
    print(
        f"engine, {site.num_features} features   {engine_s:8.2f} s  {throughput['engine']:8.2f} samples/s  (cache hit after: {cached_s:.2f} s)"
    )
    print(f"per-feature loop, {args.loop_features} ft {loop_s:8.2f} s  {throughput['loop']:8.2f} samples/s  "
          f"(timed {len(loop_features)} features x {timed_samples} samples: {loop_timed_s:.2f} s, scaled)")  # fmt: skip
    print(f"engine vs bare forward: {vs_bare:.2f}x (target >= {TARGET_VS_BARE}x)")
    print(
        f"engine ({site.num_features} features) vs per-feature loop ({args.loop_features} features): {vs_loop:.1f}x (target >= {TARGET_VS_LOOP}x)"
    )
    print(
        f"peak traced Python/numpy memory during extraction: {engine_peak / 2**20:.1f} MiB; process peak RSS: {peak_rss_mib:.0f} MiB"
    )
    return 0 if vs_bare >= TARGET_VS_BARE and vs_loop >= TARGET_VS_LOOP else 1


if __name__ == "__main__":
    sys.exit(main())
