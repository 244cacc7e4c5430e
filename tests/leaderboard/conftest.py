"""Shared fixtures: a real MLflow sqlite store with synthetic variant runs, the sites built from it, Chromium."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

# Test folders are not packages; the helper modules beside this file (also used by
# benchmarks/bench_leaderboard.py) are imported by their own, unique names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from leaderboard_browser import Chromium, find_chromium  # noqa: E402
from leaderboard_runs import (  # noqa: E402
    DEMO_VARIANTS,
    FEATURES,
    HOSTILE_VARIANTS,
    SyntheticVariant,
    histogram_png,
    log_variant,
)
from mlflow import MlflowClient  # noqa: E402
from needs import missing  # noqa: E402

from harness.track.store import default_tracking_uri, ensure_experiment  # noqa: E402
from leaderboard import build_site  # noqa: E402


@dataclass(frozen=True)
class Store:
    uri: str
    run_ids: dict[str, str]  # variant name -> run id


@dataclass(frozen=True)
class Site:
    store: Store
    folder: Path
    index: Path
    experiments: tuple[str, ...]


def _radar_figure():
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 3), subplot_kw={"projection": "polar"})
    axes.plot([0, 1.6, 3.1, 4.7, 0], [0.7, 0.6, 0.8, 0.3, 0.7])
    return figure


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    """One sqlite store, experiments "demo" (7 variants) and "hostile" (XSS payloads in every untrusted field)."""
    uri = default_tracking_uri(tmp_path_factory.mktemp("mlruns"))
    png = histogram_png()
    run_ids = {}
    for experiment, variants in (("demo", DEMO_VARIANTS), ("hostile", HOSTILE_VARIANTS)):
        experiment_id = ensure_experiment(experiment, uri)
        for seed, variant in enumerate(variants):
            run_ids[variant.name] = log_variant(
                experiment_id,
                variant,
                FEATURES,
                seed=seed,
                plot_png=png,
                log_figure=_radar_figure if seed == 0 else None,
            )
    # A trained variant and its random-model control (tags as `harness run` sets them: docs/controls.md).
    experiment_id = ensure_experiment("controls", uri)
    trained = log_variant(experiment_id, SyntheticVariant("top-tokens", quality=0.75), FEATURES, seed=11)
    control = log_variant(
        experiment_id,
        SyntheticVariant("random-model", {"model.weights": "random"}, quality=0.2),
        FEATURES,
        seed=12,
    )
    client = MlflowClient(uri)
    client.set_tag(control, "harness.control", "random-model")
    client.set_tag(control, "harness.control_of", client.get_run(trained).data.tags["harness.variant_key"])
    run_ids |= {"controls:top-tokens": trained, "controls:random-model": control}
    yield Store(uri, run_ids)
    mlflow.set_tracking_uri(None)


def _build(store: Store, folder: Path, experiments: tuple[str, ...]) -> Site:
    index = build_site(list(experiments), store.uri, folder, title="Demo leaderboard", progress=False)
    return Site(store, folder, index, experiments)


@pytest.fixture(scope="session")
def demo_site(store, tmp_path_factory) -> Site:
    return _build(store, tmp_path_factory.mktemp("demo") / "site", ("demo",))


@pytest.fixture(scope="session")
def controls_site(store, tmp_path_factory) -> Site:
    return _build(store, tmp_path_factory.mktemp("controls") / "site", ("controls",))


@pytest.fixture(scope="session")
def hostile_site(store, tmp_path_factory) -> Site:
    return _build(store, tmp_path_factory.mktemp("hostile") / "site", ("hostile",))


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        missing(
            "no Chromium binary found: install Debian's `chromium` (apt-get install chromium) "
            "or set HARNESS_CHROMIUM to a Chrome/Chromium executable"
        )
    with Chromium(binary, tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium


@pytest.fixture()
def page(browser):
    tab = browser.new_page()
    yield tab
    tab.close()
