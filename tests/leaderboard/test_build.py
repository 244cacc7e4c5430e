"""The written site: its files, embedded data, downloads, escaping, and a folder swap that loses nothing."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from leaderboard_runs import DEMO_VARIANTS, FEATURES, HOSTILE_VARIANTS, PAYLOAD, SPREADSHEET_FORMULA, log_variant
from mlflow import MlflowClient

from harness.track.store import default_tracking_uri, ensure_experiment
from leaderboard import LeaderboardDocument, LeaderboardError, build_site
from leaderboard._build import embed_json, page_groups
from leaderboard._read import variant_page

DATA_BLOCK = re.compile(r'<script type="application/json" id="page-data">(.*?)</script>', re.S)
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'"


def _document(folder: Path) -> LeaderboardDocument:
    return LeaderboardDocument.model_validate_json((folder / "leaderboard.json").read_text())


def test_page_groups_close_before_the_size_or_count_limit():
    assert page_groups([100, 100, 300, 50, 500, 10], max_bytes=400, max_count=3) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
        range(5, 6),
    ]
    assert page_groups([1] * 7, max_bytes=400, max_count=3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert page_groups([], max_bytes=400, max_count=3) == []


def test_embedded_json_cannot_close_its_script_block():
    value = {"text": PAYLOAD, "more": "</script><!-- --> & </SCRIPT >", "n": [1.5, None]}
    embedded = str(embed_json(value))
    assert not set("<>&") & set(embedded)
    assert json.loads(embedded) == value
    with pytest.raises(ValueError):
        embed_json(float("nan"))  # NaN is not JSON: undefined values must be None


def test_site_has_a_page_per_variant_and_feature_with_parseable_data(demo_site):
    folder = demo_site.folder
    document = _document(folder)
    assert len(document.variants) == len(DEMO_VARIANTS)
    for name in (
        "index.html",
        "leaderboard.json",
        "leaderboard.csv",
        "leaderboard.schema.json",
        "static/leaderboard.js",
        "static/leaderboard.css",
        ".leaderboard-site",
    ):
        assert (folder / name).is_file(), name
    pages = sorted(folder.rglob("*.html"))
    feature_pages = [
        page for page in pages if page.parent.name == "features" and page.parent.parent.parent.name == "variants"
    ]
    # index + per variant (its page and its feature pages) + one cross-variant page per feature
    assert len(pages) == 1 + len(DEMO_VARIANTS) + len(feature_pages) + len(FEATURES)
    for entry in document.variants:
        assert (folder / entry.page).is_file()
        held = [
            record["feature"]
            for page in sorted(
                (folder / entry.page).parent.joinpath("features").glob("*.html"),
                key=lambda p: int(p.stem.split("-")[0]),
            )
            for record in json.loads(DATA_BLOCK.search(page.read_text()).group(1))["features"]
        ]
        assert held == FEATURES  # every feature on exactly one page, in order
    for page in pages:
        html = page.read_text()
        blocks = DATA_BLOCK.findall(html)
        assert len(blocks) == 1, page
        json.loads(blocks[0])
        assert f'content="{CSP}' in html
        # nothing is fetched from elsewhere: every src/href is relative
        for link in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert not re.match(r"^([a-z]+:|//)", link), (page, link)
    # the script fetches nothing; its one web-URL pattern checks the link to a tracking server's traces
    assert "http" not in (folder / "static" / "leaderboard.js").read_text().replace("http://www.w3.org", "").replace(
        "/^https?:", ""
    )
    assert "url(" not in (folder / "static" / "leaderboard.css").read_text()


def test_index_data_is_the_validated_document(demo_site):
    html = (demo_site.folder / "index.html").read_text()
    data = json.loads(DATA_BLOCK.search(html).group(1))
    document = _document(demo_site.folder)
    assert LeaderboardDocument.model_validate(data["document"]) == document
    assert [s["key"] for s in data["settings"]] == list(document.variants[0].settings.model_dump())
    schema = json.loads((demo_site.folder / "leaderboard.schema.json").read_text())
    assert schema == LeaderboardDocument.model_json_schema()


def test_run_plots_are_copied_byte_for_byte(demo_site):
    entry = _document(demo_site.folder).variants[0]
    client = MlflowClient(demo_site.store.uri)
    for artifact in ("plots/score_distributions.png", "plots/features/0/activations.png"):
        original = Path(client.download_artifacts(entry.run_id, artifact))
        copied = demo_site.folder / "variants" / entry.run_id / artifact
        assert copied.read_bytes() == original.read_bytes()
    feature_pages = (demo_site.folder / "variants" / entry.run_id / "features").glob("*.html")
    records = [
        record
        for page in feature_pages
        for record in json.loads(DATA_BLOCK.search(page.read_text()).group(1))["features"]
    ]
    plots = {record["feature"]: record["plots"] for record in records}
    assert plots[0] == [
        {"src": "../plots/features/0/activations.png", "name": "activations.png", "width": 400, "height": 250}
    ]
    assert plots[2] == []  # only the first two features have plots in the synthetic runs


def test_csv_download_is_the_ranked_table_with_formulas_defused(hostile_site):
    document = _document(hostile_site.folder)
    with open(hostile_site.folder / "leaderboard.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["run_id"] for row in rows] == [entry.run_id for entry in document.variants]
    assert float(rows[0]["clarity_mean"]) == pytest.approx(document.variants[0].scores["clarity"].mean)
    names = {row["variant"] for row in rows}
    assert "'" + SPREADSHEET_FORMULA in names and SPREADSHEET_FORMULA not in names
    assert "hostile " + PAYLOAD in names  # text other than formulas is kept as is
    assert {"explainer_model", "rater", "cost_usd", "prompt_tokens", "features"} <= set(rows[0])


def test_untrusted_text_is_never_written_raw_into_a_page(hostile_site):
    """Every page escapes it: HTML escaping outside the data block, JSON escaping inside."""
    pages = list(hostile_site.folder.rglob("*.html"))
    assert len(pages) > len(FEATURES)
    for page in pages:
        html = page.read_text()
        for raw in ("<script>window", 'onerror="window', "<svg onload", "<img src=x", "</script><!--"):
            assert raw not in html, (page, raw)
    hostile = next(entry for entry in _document(hostile_site.folder).variants if entry.variant.startswith("hostile"))
    assert hostile.settings.explainer_model == PAYLOAD  # kept as data, byte for byte
    assert len(_document(hostile_site.folder).variants) == len(HOSTILE_VARIANTS)


def test_rank_by_a_score_with_weights_and_a_subset_of_runs(store, tmp_path):
    chosen = [store.run_ids[DEMO_VARIANTS[i].name] for i in (1, 4, 6)]
    build_site(
        ["demo"],
        store.uri,
        tmp_path / "site",
        rank_by="purity",
        weights={"clarity": 1, "purity": 1},
        run_ids=chosen,
        progress=False,
    )
    document = _document(tmp_path / "site")
    assert document.rank_by == "purity" and document.weights == {"clarity": 1.0, "purity": 1.0}
    assert sorted(entry.run_id for entry in document.variants) == sorted(chosen)
    purity = [entry.scores["purity"].mean for entry in document.variants]
    assert purity == sorted(purity, reverse=True)
    for entry in document.variants:  # per feature; purity undefined with no_rated_2_samples counts 0
        rows = _per_feature_rows(store, entry.run_id)
        expected = sum((row["clarity"] + (row["purity"] or 0.0)) / 2 for row in rows) / len(rows)
        assert entry.aggregate == pytest.approx(expected)
    assert len(list((tmp_path / "site" / "variants").iterdir())) == 3


def _per_feature_rows(store, run_id: str) -> list[dict]:
    from mlflow import MlflowClient

    content = json.loads(
        Path(MlflowClient(store.uri).download_artifacts(run_id, "tables/per_feature.json")).read_text()
    )
    return [dict(zip(content["columns"], row)) for row in content["data"]]


def _scatter_titles(index: Path) -> list[str]:
    svg = re.search(r'<svg class="plot"[^>]*aria-label="cost against.*?</svg>', index.read_text(), re.S).group(0)
    return re.findall(r"<title>(.*?)</title>", svg)


def test_the_cost_plot_counts_llm_tokens_when_every_variant_cost_nothing(demo_site, store, tmp_path):
    free = [variant for variant in DEMO_VARIANTS if variant.cost_usd == 0]
    assert len(free) >= 2
    index = build_site(
        ["demo"], store.uri, tmp_path / "site", run_ids=[store.run_ids[v.name] for v in free], progress=False
    )
    tokens = {entry.variant: entry.tokens for entry in _document(tmp_path / "site").variants}
    titles = _scatter_titles(index)
    for variant in free:
        assert any(
            title.startswith(f"{variant.name}: {tokens[variant.name]:,} LLM tokens, aggregate ") for title in titles
        )
    page = index.read_text()
    assert "cost (LLM tokens: every variant cost $0" in page and "cost is the LLM tokens each spent" in page
    # with priced variants among them, the axis stays in dollars
    assert "cost (USD" in demo_site.index.read_text() and "LLM tokens" not in " ".join(_scatter_titles(demo_site.index))


def test_several_experiments_are_ranked_together(store, tmp_path):
    build_site(["demo", "hostile"], store.uri, tmp_path / "site", progress=False)
    document = _document(tmp_path / "site")
    assert document.experiments == ["demo", "hostile"]
    assert {entry.experiment for entry in document.variants} == {"demo", "hostile"}
    assert len(document.variants) == len(DEMO_VARIANTS) + len(HOSTILE_VARIANTS)


def test_output_folder_is_replaced_only_when_it_is_a_site_and_only_after_success(store, tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LeaderboardError, match="is not a leaderboard site"):
        build_site(["demo"], store.uri, foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"

    site = tmp_path / "site"
    build_site(["demo"], store.uri, site, title="first", progress=False)
    assert _document(site).title == "first"
    (site / "stale.txt").write_text("from an earlier build")
    build_site(["demo"], store.uri, site, title="second", progress=False)
    assert _document(site).title == "second" and not (site / "stale.txt").exists()

    # a build that fails half-way leaves the previous site as it was, and no temporary folders
    import leaderboard._build as build_module

    def fail(*args, **kwargs):
        raise LeaderboardError("artifact broken")

    monkeypatch.setattr(build_module, "read_run_artifacts", fail)
    before = {path: path.read_bytes() for path in site.rglob("*") if path.is_file()}
    with pytest.raises(LeaderboardError, match="artifact broken"):
        build_site(["demo"], store.uri, site, title="third", progress=False)
    assert {path: path.read_bytes() for path in site.rglob("*") if path.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "site"]


def test_the_half_written_site_of_a_killed_build_is_removed_by_the_next(store, tmp_path):
    """A SIGKILLed build leaves its building folder; the next build of the same output removes it (#30), and
    leaves a running build's alone."""
    import os
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # its process id names no process now
    abandoned = tmp_path / f".site.building-{gone.pid}-abcd1234"
    running = tmp_path / f".site.building-{os.getpid()}-efgh5678"
    for folder in (abandoned, running):
        (folder / "static").mkdir(parents=True)
    build_site(["demo"], store.uri, tmp_path / "site", progress=False)
    assert not abandoned.exists() and running.exists()


def test_a_site_can_be_copied_anywhere(demo_site, tmp_path):
    """Relative links only: a moved copy has every link resolving inside itself."""
    copy = tmp_path / "elsewhere" / "board"
    shutil.copytree(demo_site.folder, copy)
    for page in copy.rglob("*.html"):
        html = page.read_text()
        targets = re.findall(r'(?:src|href)="([^"#]+)', html)
        data = json.loads(DATA_BLOCK.search(html).group(1))
        targets += [
            value.split("#")[0]
            for key, value in _walk(data)
            if key in {"page", "variant_page", "across", "src", "pages"} and isinstance(value, str)
        ]
        for target in targets:
            assert (page.parent / target).resolve().is_file(), (page, target)


def _walk(value, key=None):
    if isinstance(value, dict):
        for inner_key, inner in value.items():
            yield from _walk(inner, inner_key)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner, key)
    else:
        yield key, value


def test_a_secret_in_a_runs_params_is_not_published(tmp_path):
    # A run logged before inline secrets were refused, or by another tool, holds them in clear.
    key = "sk-planted-0123456789abcdef"
    uri = default_tracking_uri(tmp_path / "mlruns")
    run_id = log_variant(ensure_experiment("old", uri), DEMO_VARIANTS[0], FEATURES)
    client = MlflowClient(uri)
    client.log_param(run_id, "explain.llm.extra_params.extra_body.api_key", key)
    client.log_param(run_id, "explain.llm.extra_params.extra_body.proxy", f"http://u:{key}@host/v1")
    site = build_site(["old"], uri, tmp_path / "site", progress=False).parent
    published = [path for path in site.rglob("*") if path.is_file() and key.encode() in path.read_bytes()]
    assert not published
    assert "http://host/v1" in (site / variant_page(run_id)).read_text()
