"""Build time of the leaderboard site for 50 variants x 500 features (target: under 30 s on the CPU machine).

Logs synthetic variant runs (real MLflow, sqlite store, tables as the tracking contract says) into a temp
folder, then times, in the same process:
  - the MLflow query alone (`variants_table`),
  - the read floor: that query plus copying every run's tables out of the store and `json.load`-ing them,
  - `build_site` end to end (reading the runs from sqlite included), then again over the site it wrote,
and prints the build times and their ratio to the read floor.

    python benchmarks/bench_leaderboard.py [--variants 50] [--features 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "leaderboard"))  # the synthetic run writer the tests use

from leaderboard_runs import SyntheticVariant, histogram_png, log_variant  # noqa: E402

from harness.track.compare import variants_table  # noqa: E402
from harness.track.store import default_tracking_uri, ensure_experiment  # noqa: E402
from leaderboard import build_site  # noqa: E402

EXPLAINERS = ("openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "local/smollm2-135m")
TEMPLATES = ("delphi", "plain", "neuron-explainer", "contrast")


def _log_runs(uri: str, variants: int, features: int, args: argparse.Namespace) -> None:
    experiment_id = ensure_experiment("bench", uri)
    png = histogram_png()
    for index in range(variants):
        variant = SyntheticVariant(
            f"variant {index:02d} · {EXPLAINERS[index % 4].split('/')[1]} · {TEMPLATES[(index // 4) % 4]}",
            {
                "explain.llm.model": EXPLAINERS[index % 4],
                "explain.prompt.template": TEMPLATES[(index // 4) % 4],
                "explain.selection.num_examples": 5 + 5 * (index % 3),
                "fade.rater.model": "openai/gpt-4o-mini",
            },
            quality=0.3 + 0.5 * (index % 10) / 10,
            cost_usd=0.01 * (1 + index),
        )
        log_variant(
            experiment_id,
            variant,
            list(range(features)),
            seed=index,
            examples=args.examples,
            tokens=args.tokens,
            rated_per_stage=args.rated,
            plot_png=png,
            plot_features=3,
        )


def _read_floor(uri: str) -> float:
    """The query plus copying and parsing every run's tables: what any build has to do at least."""
    from mlflow import MlflowClient

    start = time.perf_counter()
    table = variants_table(["bench"], uri)
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as folder:
        for run_id in table["run_id"]:
            for path in Path(client.download_artifacts(run_id, "tables", folder)).glob("*.json"):
                json.loads(path.read_text())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=50)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--examples", type=int, default=10, help="top activating samples per feature")
    parser.add_argument("--tokens", type=int, default=24, help="tokens per top sample")
    parser.add_argument("--rated", type=int, default=20, help="rated samples per feature and stage")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        uri = default_tracking_uri(Path(folder) / "mlruns")
        start = time.perf_counter()
        _log_runs(uri, args.variants, args.features, args)
        print(
            f"logged {args.variants} runs x {args.features} features in {time.perf_counter() - start:.1f} s "
            f"({args.examples} top samples x {args.tokens} tokens, {2 * args.rated} rated samples per feature)"
        )
        tables = sum(p.stat().st_size for p in (Path(folder) / "mlruns" / "artifacts").rglob("*.json"))
        print(f"tables in the store: {tables / 1e6:.0f} MB")

        start = time.perf_counter()
        variants_table(["bench"], uri)
        query = time.perf_counter() - start
        floor = _read_floor(uri)
        start = time.perf_counter()
        build_site(["bench"], uri, Path(folder) / "site", progress=False)
        build = time.perf_counter() - start
        start = time.perf_counter()
        build_site(["bench"], uri, Path(folder) / "site", progress=False)
        rebuild = time.perf_counter() - start
        files = [p for p in (Path(folder) / "site").rglob("*") if p.is_file()]
        print(f"site: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.0f} MB")
        print(f"MLflow query (variants_table):          {query:6.2f} s")
        print(f"read floor (query + copy + parse tables): {floor:6.2f} s")
        print(
            f"build_site end to end:                   {build:6.2f} s  = {build / floor:.1f} x the read floor, "
            f"{build / 30:.0%} of the 30 s budget"
        )
        print(f"rebuild over that site (old one deleted): {rebuild:6.2f} s  = {rebuild / floor:.1f} x the read floor")


if __name__ == "__main__":
    main()
