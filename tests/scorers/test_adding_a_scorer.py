"""docs/architecture.md's "A scorer", followed as written: its example scorer and registration code are read
from the doc, so the doc cannot drift from what works; as a plugin, the same files are the package
tests/scorers/overlap_plugin, pip-installed apart from the venv and run through the `harness` CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from scorer_records import TOPICS, shuffled_descriptions, true_descriptions

from harness.config import ScorersConfig, identity_payload, parse_config, result_fingerprint
from harness.errors import ConfigError
from harness.evaluate.scorers import run_scorers
from harness.registry import SCORERS, Registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
FEATURES = list(range(len(TOPICS)))


def _python_blocks() -> list[str]:
    """The doc's python code blocks, dedented (one sits inside a list item)."""
    text = DOC.read_text(encoding="utf-8")
    return [textwrap.dedent(block) for block in re.findall(r"^ *```python\n(.*?)^ *```", text, re.S | re.M)]


def _block(marker: str) -> str:
    (found,) = [block for block in _python_blocks() if marker in block]
    return found


@pytest.fixture
def documented_scorer(tmp_path, monkeypatch):
    """The doc's my_scorers.py written to an importable folder and registered by the doc's own lines; the
    registry and sys.modules are restored afterwards, so no other test sees the scorer."""
    module = _block("# my_scorers.py")
    (tmp_path / "my_scorers.py").write_text(module, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(SCORERS, "_targets", dict(SCORERS._targets))
    monkeypatch.setattr(SCORERS, "_names_by_target", dict(SCORERS._names_by_target))
    exec(_block("SCORERS.add("), {})
    yield
    sys.modules.pop("my_scorers", None)


def test_the_documented_scorer_is_registered_and_named_in_a_config(documented_scorer):
    assert "overlap" in SCORERS.names()
    config = parse_config({"scorers": {"enabled": ["overlap"]}})  # parse_config runs check_names
    assert config.scorers.enabled == ["overlap"]
    assert SCORERS.name_of(SCORERS.get("overlap")) == "overlap"


def test_a_config_naming_it_fails_check_names_without_the_registration():
    with pytest.raises(ConfigError, match=r"scorers.enabled\[0\]: unknown scorer 'overlap'"):
        parse_config({"scorers": {"enabled": ["overlap"]}})


def test_the_documented_scorer_runs_through_run_scorers_and_separates_true_from_shuffled(
    documented_scorer, planted_records
):
    config = ScorersConfig(enabled=["overlap"])
    described = {**true_descriptions(FEATURES[:-1]), FEATURES[-1]: None}
    table = run_scorers(planted_records, described, config, None, progress=False).set_index("feature")
    assert list(table.columns) == ["overlap", "overlap_reason", "overlap_examples"]
    assert table.loc[FEATURES[-1], "overlap_reason"] == "no_description"
    scored = table.loc[FEATURES[:-1]]
    assert scored["overlap_reason"].isna().all() and (scored["overlap_examples"] == 20).all()
    shuffled = run_scorers(planted_records, shuffled_descriptions(FEATURES), config, None, progress=False)
    true = run_scorers(planted_records, true_descriptions(FEATURES), config, None, progress=False)
    assert (true["overlap"] > 0.9).all() and (true["overlap"] > shuffled["overlap"]).all()


def test_registry_add_refuses_a_taken_name_or_a_target_without_an_attribute(monkeypatch):
    monkeypatch.setattr(SCORERS, "_targets", dict(SCORERS._targets))
    with pytest.raises(ValueError, match="scorer 'embedding' is already registered"):
        SCORERS.add("embedding", "my_scorers:OverlapScorer")
    with pytest.raises(ValueError, match="'package.module:attribute'"):
        SCORERS.add("overlap", "my_scorers.OverlapScorer")
    assert "overlap" not in SCORERS


PLUGIN = Path(__file__).resolve().parent / "overlap_plugin"


def test_the_guide_shows_the_plugin_package_as_it_is():
    """The guide's my_scorers.py and pyproject.toml are the test package's files, word for word."""
    assert _block("# my_scorers.py") == "# my_scorers.py\n" + (PLUGIN / "my_scorers.py").read_text(encoding="utf-8")
    (pyproject,) = [
        textwrap.dedent(block)
        for block in re.findall(r"^ *```toml\n(.*?)^ *```", DOC.read_text(encoding="utf-8"), re.S | re.M)
        if "feature_harness.scorers" in block
    ]
    assert pyproject == (PLUGIN / "pyproject.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The test package pip-installed (no dependencies) into a folder of its own, put on PYTHONPATH by the runs
    that should see it: its dist-info there is what importlib.metadata finds, nothing goes into the venv."""
    source = tmp_path_factory.mktemp("plugin-source")
    shutil.copytree(PLUGIN, source, dirs_exist_ok=True)  # the build writes egg-info beside the sources
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return site


def _harness(*args: str, cwd: Path, plugin_site: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`harness ...` in a subprocess of this worktree, seeing the plugin only when `plugin_site` is given."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([root, *([str(plugin_site)] if plugin_site is not None else [])])
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip


def _plugin_config(folder: Path, server_url: str, settings: dict, **sections) -> Path:
    llm = {"model": "openai/scripted", "api_base": server_url, "backoff_base_s": 0.01}
    config = {
        "name": "plugin",
        "corpus": {"num_samples": 100, "max_chars": 160, "seed": 5},
        "site": {"module": "model.layers.3.mlp.act_fn", "features": [77, 91]},
        "activations": {"batch_size": 16, "max_length": 32, "skip_first_positions": 1,
                        "cache_dir": str(folder / "cache")},
        "explain": {"explainer": "top-tokens", "selection": {"num_examples": 6}},
        "fade": {"rater": llm, "clarity_llm_calls": 2, "num_samples": 30, "faithfulness": {"enabled": False}},
        "scorers": {"enabled": ["overlap"], "settings": {"overlap": settings}},
        "tracking": {"experiment": "plugin", "store_dir": str(folder / "mlruns"), "bootstrap_samples": 100,
                     "plot_features": 0},
        **sections,
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_an_installed_plugin_is_checked_at_load_and_its_settings_with_the_dotted_path(plugin_site, monkeypatch):
    """The installed package's entry point, read by SCORERS as if this process had just started."""
    config = {"scorers": {"enabled": ["overlap"], "settings": {"overlap": {"num_examples": 1}}}}
    with pytest.raises(ConfigError, match=r"scorers.enabled\[0\]: unknown scorer 'overlap'"):
        parse_config(config)
    for attribute in ("_targets", "_names_by_target", "_distributions"):
        monkeypatch.setattr(SCORERS, attribute, dict(getattr(SCORERS, attribute)))
    monkeypatch.setattr(SCORERS, "_plugins_read", False)
    monkeypatch.syspath_prepend(str(plugin_site))
    try:
        with pytest.raises(ConfigError) as raised:
            parse_config(config)
        assert str(raised.value).splitlines()[1:] == [
            "  scorers.settings.overlap.num_examples: Input should be greater than or equal to 2"
        ]
        assert SCORERS.distribution("overlap") == "harness-overlap"
    finally:
        sys.modules.pop("my_scorers", None)


@pytest.mark.slow
def test_an_installed_plugin_scorer_reaches_compare_and_the_leaderboard(tmp_path, plugin_site):
    """`harness run` with the plugin installed logs its score and manifest; `harness compare` and
    `harness leaderboard build` show it from the runs alone, in a process where the plugin is not installed."""
    from harness.testing.loopback import LoopbackServer
    from leaderboard import LeaderboardDocument

    with LoopbackServer() as server:
        # Two variants that differ only in the plugin's settings: two runs, since they are part of the identity.
        grid = {"grid": {"scorers.settings.overlap.num_examples": [10, 16]}}
        path = _plugin_config(tmp_path, server.url, {"num_examples": 10}, variants=grid)
        ran = _harness("run", str(path), "--quiet", cwd=tmp_path, plugin_site=plugin_site)
        assert ran.returncode == 0, ran.stderr
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"]
    compared = _harness("compare", "plugin", "--rank-by", "overlap", *store, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    header = compared.stdout.splitlines()[0].split()
    assert "overlap" in header and header.index("overlap") > header.index("purity")
    # The paired test read both runs' per-feature overlap values (without the manifest: "no per-feature values").
    assert "only 2 paired features define overlap (a test needs 10)" in compared.stdout, compared.stdout
    built = _harness("leaderboard", "build", "--experiment", "plugin", "--output", str(tmp_path / "site"), *store,
                     cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    document = LeaderboardDocument.model_validate_json((tmp_path / "site" / "leaderboard.json").read_text())
    assert document.scores == ["clarity", "responsiveness", "purity", "overlap"]
    assert len(document.variants) == 2
    for entry in document.variants:
        assert entry.scores["overlap"].mean is not None and 0 <= entry.scores["overlap"].mean <= 1


def _installed(folder: Path, distribution: str, entry_points: str) -> Path:
    """A distribution's metadata as an installer writes it (a dist-info folder), without its code."""
    info = folder / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return folder


def test_a_registry_reads_its_entry_point_group_without_importing_the_plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(
        str(_installed(tmp_path, "harness-overlap", "[feature_harness.scorers]\noverlap = my_scorers:OverlapScorer\n"))
    )
    registry = Registry("scorer", {"embedding": "harness.evaluate.scorers._embedding:EmbeddingScorer"}, group="scorers")
    assert registry.names() == ["embedding", "overlap"] and registry.unknown("overlap") is None
    assert registry.distribution("overlap") == "harness-overlap" and registry.distribution("embedding") is None
    assert "my_scorers" not in sys.modules


def test_a_plugin_taking_a_built_in_name_is_an_error_naming_its_distribution(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(
        str(_installed(tmp_path, "harness-clash", "[feature_harness.scorers]\nembedding = my_scorers:OverlapScorer\n"))
    )
    registry = Registry("scorer", {"embedding": "harness.evaluate.scorers._embedding:EmbeddingScorer"}, group="scorers")
    with pytest.raises(ConfigError, match=r"scorer 'embedding' of the installed distribution 'harness-clash' .*"
                       r"already registered by the harness; rename it in harness-clash's entry points"):  # fmt: skip
        registry.names()


def test_plugin_settings_are_checked_at_load_and_part_of_the_identity_only_when_set(documented_scorer):
    plain = parse_config({"scorers": {"enabled": ["overlap"]}})
    assert plain.scorers.settings == {} and "settings" not in identity_payload(plain.scorers)
    assert result_fingerprint(plain) == result_fingerprint(parse_config({"scorers": {"enabled": ["overlap"]}}))
    tuned = parse_config({"scorers": {"enabled": ["overlap"], "settings": {"overlap": {"num_examples": 10}}}})
    assert result_fingerprint(tuned) != result_fingerprint(plain)
    assert SCORERS.get("overlap")().settings(tuned.scorers).num_examples == 10
    with pytest.raises(ConfigError) as raised:
        parse_config({"scorers": {"settings": {"overlap": {"num_example": 10}, "detection": {"batch_size": 2}}}})
    assert "scorers.settings.overlap.num_example: unknown key" in str(raised.value)
    assert "scorers.settings.detection: harness.evaluate.scorers._detection:DetectionScorer declares no" in str(
        raised.value
    )


def test_a_plugin_registered_where_its_package_re_exports_it_knows_its_name(tmp_path, monkeypatch):
    package = tmp_path / "reexporting"
    package.mkdir()
    (package / "_impl.py").write_text("class Thing:\n    pass\n", encoding="utf-8")
    (package / "__init__.py").write_text("from reexporting._impl import Thing\n", encoding="utf-8")
    monkeypatch.syspath_prepend(
        str(_installed(tmp_path, "reexporting", "[feature_harness.scorers]\nthing = reexporting:Thing\n"))
    )
    registry = Registry("scorer", {}, group="scorers")
    try:
        assert registry.name_of(registry.get("thing")) == "thing"
    finally:
        for module in ("reexporting", "reexporting._impl"):
            sys.modules.pop(module, None)


def test_an_entry_point_without_an_attribute_is_an_error_naming_its_distribution(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(
        str(_installed(tmp_path, "harness-module", "[feature_harness.scorers]\nwhole = my_scorers\n"))
    )
    with pytest.raises(ConfigError, match=r"entry point 'whole' of the installed distribution 'harness-module'.*"
                       r"names 'my_scorers'; a scorer entry point is 'module:attribute'"):  # fmt: skip
        Registry("scorer", {}, group="scorers").unknown("whole")
