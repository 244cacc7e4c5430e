"""The built site in a real headless Chromium, opened from file:// (no server, no network)."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

from leaderboard_runs import FEATURES, PAYLOAD
from mlflow import MlflowClient
from scipy.stats import spearmanr

from leaderboard import LeaderboardDocument

REPO = Path(__file__).resolve().parents[2]
INJECTED = "document.querySelectorAll('img[src=\"x\"], svg[onload], [onerror], script:not([src]):not([type])').length"


def _document(site) -> LeaderboardDocument:
    return LeaderboardDocument.model_validate_json((site.folder / "leaderboard.json").read_text())


def _rows(page, table: str) -> list[str]:
    return page.evaluate(
        f"[...document.querySelectorAll('#{table} tbody tr')].filter(tr => !tr.hidden).map(tr => tr.dataset.key)"
    )


def _variant_dir(site, run_id: str) -> Path:
    return site.folder / "variants" / run_id


def _feature_url(site, run_id: str, feature: int) -> str:
    """The page holding a feature of a variant (pages are named <first>-<last>.html), with #feature."""
    for page in (_variant_dir(site, run_id) / "features").glob("*.html"):
        first, last = map(int, page.stem.split("-"))
        if first <= feature <= last:
            return f"{page.as_uri()}#{feature}"
    raise AssertionError(f"no page holds feature {feature}")


def _per_feature(store, run_id: str) -> dict[int, dict]:
    """The run's own per-feature table, read back from MLflow independently of the leaderboard."""
    path = Path(MlflowClient(store.uri).download_artifacts(run_id, "tables/per_feature.json"))
    content = json.loads(path.read_text())
    return {row[0]: dict(zip(content["columns"], row)) for row in content["data"]}


def _select(page, selector: str, value: str) -> None:
    """Pick an option the way a keyboard user does: focus the select, press ArrowDown until it shows `value`."""
    page.evaluate(f"document.querySelector({selector!r}).focus()")
    for _ in range(20):
        if page.evaluate(f"document.querySelector({selector!r}).value") == value:
            return
        for kind in ("keyDown", "keyUp"):
            page._call(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "ArrowDown", "code": "ArrowDown", "windowsVirtualKeyCode": 40},
            )
    raise AssertionError(f"{selector} never showed {value!r}")


def test_every_kind_of_page_loads_from_file_without_console_errors(demo_site, page):
    document = _document(demo_site)
    best = document.variants[0]
    variant = _variant_dir(demo_site, best.run_id)
    across = next((demo_site.folder / "features").iterdir())
    pages = {  # url: (table id, its rows, images on the page)
        demo_site.index.as_uri(): ("variants", len(document.variants), 0),
        (variant / "index.html").as_uri(): ("features", len(FEATURES), 2),
        _feature_url(demo_site, best.run_id, 0): ("rated", 12, 1),
        (across / "5.html").as_uri(): ("across", len(document.variants), 0),
    }
    for path, (table, rows, images) in pages.items():
        assert path.startswith("file://")
        page.goto(path)
        assert len(_rows(page, table)) == rows, path
        # every image (the run's PNGs copied into the site) loads and decodes, lazy ones included
        decoded = page.evaluate(
            "Promise.all([...document.images].map(image => { image.loading = 'eager';"
            " return image.decode().then(() => image.naturalWidth > 0, () => false); }))",
            await_promise=True,
        )
        assert len(decoded) == images and all(decoded), path
    assert page.errors() == []


def test_clicking_a_column_header_reorders_the_rows(demo_site, page):
    variants = _document(demo_site).variants
    page.goto(demo_site.index.as_uri())
    assert _rows(page, "variants") == [v.run_id for v in variants]  # rank order first

    page.click('th[data-key="clarity"] button')
    by_clarity = sorted(variants, key=lambda v: v.scores["clarity"].mean, reverse=True)
    assert _rows(page, "variants") == [v.run_id for v in by_clarity]
    assert page.evaluate("document.querySelector('th[data-key=\"clarity\"]').getAttribute('aria-sort')") == "descending"

    page.click('th[data-key="clarity"] button')
    assert _rows(page, "variants") == [v.run_id for v in reversed(by_clarity)]

    # cost ties (two free variants) keep the previous order: the sort is stable
    previous = list(reversed(by_clarity))
    page.click('th[data-key="cost_usd"] button')
    assert _rows(page, "variants") == [v.run_id for v in sorted(previous, key=lambda v: v.cost_usd)]

    page.click('th[data-key="variant"] button')
    assert _rows(page, "variants") == [v.run_id for v in sorted(variants, key=lambda v: v.variant.casefold())]

    # features of a variant sort by a score with undefined values last
    best = variants[0]
    page.goto((_variant_dir(demo_site, best.run_id) / "index.html").as_uri())
    page.click('th[data-key="responsiveness"] button')
    records = _per_feature(demo_site.store, best.run_id)
    defined = sorted(
        (f for f in records if records[f]["responsiveness"] is not None), key=lambda f: -records[f]["responsiveness"]
    )
    undefined = [f for f in FEATURES if records[f]["responsiveness"] is None]
    assert _rows(page, "features") == [str(f) for f in defined + undefined]
    assert page.errors() == []


def test_filters_hide_non_matching_rows_and_rank_by_switches_the_ranking(demo_site, page):
    variants = _document(demo_site).variants
    page.goto(demo_site.index.as_uri())
    page.type_text("#filter-text", "gpt-4o-mini")

    def haystack(v):
        return " ".join(
            [v.variant, v.experiment, *(s or "" for s in v.settings.model_dump().values()), v.run_id]
        ).lower()

    matching = [v.run_id for v in variants if "gpt-4o-mini" in haystack(v)]
    assert 0 < len(matching) < len(variants)
    assert _rows(page, "variants") == matching
    assert (
        page.evaluate("document.getElementById('row-count').textContent")
        == f"{len(matching)} of {len(variants)} variants"
    )

    page.evaluate("const box = document.getElementById('filter-text'); box.select()")
    page._call("Input.insertText", {"text": "zzz-no-such-variant"})
    assert _rows(page, "variants") == []
    page.evaluate("document.getElementById('filter-text').select()")
    page._call(
        "Input.dispatchKeyEvent",
        {"type": "keyDown", "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8},
    )
    assert len(_rows(page, "variants")) == len(variants)

    _select(page, 'select[data-setting="rater"]', "anthropic/claude-3-5-haiku")
    assert _rows(page, "variants") == [v.run_id for v in variants if v.settings.rater == "anthropic/claude-3-5-haiku"]
    _select(page, 'select[data-setting="rater"]', "openai/gpt-4o-mini")
    _select(page, 'select[data-setting="explainer"]', "top-tokens")
    assert _rows(page, "variants") == [
        v.run_id for v in variants if v.settings.rater == "openai/gpt-4o-mini" and v.settings.explainer == "top-tokens"
    ]

    page.goto(demo_site.index.as_uri())
    _select(page, "#rank-by", "purity")
    by_purity = sorted(variants, key=lambda v: v.ranks["purity"].rank)
    assert _rows(page, "variants") == [v.run_id for v in by_purity]
    shown = page.evaluate("[...document.querySelectorAll('#variants tbody .rank')].map(cell => cell.textContent)")
    assert shown == [f"{v.ranks['purity'].rank}{'=' if v.ranks['purity'].tied else ''}" for v in by_purity]
    assert page.errors() == []


def test_drill_down_links_lead_to_the_variant_the_feature_and_back(demo_site, page):
    document = _document(demo_site)
    best = document.variants[0]
    page.goto(demo_site.index.as_uri())
    page.click(f'#variants tr[data-key="{best.run_id}"] td.name a', navigates=True)
    assert page.evaluate("location.href").endswith(f"/variants/{best.run_id}/index.html")
    assert page.evaluate("document.getElementById('variant-name').textContent") == best.variant

    page.click('#features tr[data-key="3"] a', navigates=True)
    assert page.evaluate("location.href") == _feature_url(demo_site, best.run_id, 3)
    assert page.evaluate("document.getElementById('feature-title').textContent") == "Feature 3"
    record = _per_feature(demo_site.store, best.run_id)[3]
    assert page.evaluate("document.getElementById('description').textContent") == record["description"]
    cards = page.evaluate("[...document.querySelectorAll('#scores .card')].map(card => card.innerText)")
    assert any("undefined" in card and "no_rated_2_samples" in card for card in cards)  # feature 3 has no rated-2
    assert page.evaluate("document.querySelectorAll('#top-examples .example').length") == 5

    page.click('a[rel="next"]')  # the next feature is on the same page: only the #fragment changes
    page.wait_for("location.hash === '#4' && document.getElementById('feature-title').textContent === 'Feature 4'")
    assert (
        page.evaluate("document.getElementById('description').textContent")
        == _per_feature(demo_site.store, best.run_id)[4]["description"]
    )

    page.click("#across-link", navigates=True)
    assert _rows(page, "across") and len(_rows(page, "across")) == len(document.variants)
    last = document.variants[-1]
    page.click(f"#across tr:nth-child({len(document.variants)}) td.text a", navigates=True)
    assert page.evaluate("location.href") == _feature_url(demo_site, last.run_id, 4)
    assert (
        page.evaluate("document.getElementById('description').textContent")
        == _per_feature(demo_site.store, last.run_id)[4]["description"]
    )

    page.click(".crumbs a", navigates=True)  # the breadcrumb back to the leaderboard
    assert page.evaluate("location.href") == demo_site.index.as_uri()
    assert page.errors() == []


def test_agreement_between_scorers_shows_each_pair_rank_correlation(demo_site, page):
    variants = _document(demo_site).variants
    expected = spearmanr(
        [v.scores["clarity"].mean for v in variants], [v.scores["purity"].mean for v in variants]
    ).statistic
    page.goto(demo_site.index.as_uri())
    cell = "document.querySelector('#agreement + figure g[data-pair=\"clarity|purity\"]')"
    assert page.evaluate(f"[...{cell}.querySelectorAll('text')].map(text => text.textContent)") == [
        f"{expected:.2f}",
        f"n = {len(variants)}",
    ]
    assert page.evaluate(f"{cell}.getBoundingClientRect().width") > 40  # drawn, not collapsed
    # the four FADE scores make six pairs
    assert page.evaluate("document.querySelectorAll('#agreement + figure g.corr-cell').length") == 6
    assert page.errors() == []


def _hostile_pages(site) -> list[str]:
    hostile = next(v for v in _document(site).variants if v.variant.startswith("hostile"))
    folder = _variant_dir(site, hostile.run_id)
    across = next((site.folder / "features").iterdir())
    return [
        site.index.as_uri(),
        (folder / "index.html").as_uri(),
        _feature_url(site, hostile.run_id, 0),
        _feature_url(site, hostile.run_id, 1),
        (across / "0.html").as_uri(),
    ]


def _assert_inert(page, pages: list[str]) -> None:
    for path in pages:
        page.goto(path)
        page.browser.pump(0.3)
        assert page.evaluate("window.__pwned") is None, path
        assert page.evaluate(INJECTED) == 0, path
        assert PAYLOAD in page.evaluate("document.body.textContent"), path


def test_hostile_strings_are_shown_as_text_and_never_execute(hostile_site, page):
    pages = _hostile_pages(hostile_site)
    _assert_inert(page, pages)
    assert page.errors() == []  # not even a CSP report: nothing tried to run
    hostile = next(v for v in _document(hostile_site).variants if v.variant.startswith("hostile"))
    page.goto(hostile_site.index.as_uri())
    assert (
        page.evaluate(f"document.querySelector('#variants tr[data-key=\"{hostile.run_id}\"] td.name').textContent")
        == hostile.variant
    )
    page.goto(pages[1])
    assert page.evaluate("document.getElementById('variant-name').textContent") == hostile.variant
    assert page.evaluate("document.title").startswith(hostile.variant)
    page.goto(pages[2])
    assert page.evaluate("document.getElementById('description').textContent") == PAYLOAD
    page.goto(pages[3])
    assert page.evaluate("document.getElementById('description').textContent") == "</script><!-- " + PAYLOAD


def test_hostile_strings_stay_inert_even_without_the_content_security_policy(hostile_site, page, tmp_path):
    """Escaping alone must hold: strip the CSP meta tag from a copy of the site and look again."""
    copy = tmp_path / "site"
    shutil.copytree(hostile_site.folder, copy)
    stripped = 0
    for html in copy.rglob("*.html"):
        text = html.read_text()
        without = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
        stripped += without != text
        html.write_text(without)
    assert stripped == len(list(copy.rglob("*.html")))
    original = hostile_site.folder.as_uri()
    _assert_inert(page, [url.replace(original, copy.as_uri()) for url in _hostile_pages(hostile_site)])
    assert page.errors() == []


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_screenshots_of_the_demo_leaderboard(demo_site, page, tmp_path):
    """Saved under the test's tmp dir and copied to leaderboard/screenshots/ (git-ignored) for people to look at."""
    best = _document(demo_site).variants[0]
    shots = {
        "leaderboard.png": (demo_site.index.as_uri(), 1400, False),
        "leaderboard-phone.png": (demo_site.index.as_uri(), 390, True),
        "variant.png": ((_variant_dir(demo_site, best.run_id) / "index.html").as_uri(), 1400, False),
        "feature.png": (_feature_url(demo_site, best.run_id, 0), 1400, False),
    }
    keep = REPO / "leaderboard" / "screenshots"
    keep.mkdir(exist_ok=True)
    for name, (url, width, mobile) in shots.items():
        page.emulate(width, 844 if mobile else 900, mobile=mobile)
        page.goto(url)
        shot = page.screenshot(tmp_path / name, full_page=not mobile)
        shot_width, shot_height = _png_size(shot)
        assert shot_width == width * (2 if mobile else 1) and shot_height >= 800
        assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
        shutil.copyfile(shot, keep / name)
    assert page.errors() == []


def test_the_controls_table_and_the_feature_labels_are_shown(controls_site, page):
    document = _document(controls_site)
    assert {item.control for item in document.controls} == {"random-model"}
    page.goto(controls_site.index.as_uri())
    rows = page.evaluate(
        "[...document.querySelectorAll('#controls tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert len(rows) == len(document.controls) > 0
    shown = {(row[0].removesuffix(" (!)"), row[-1].split(" \u2014 ")[0]) for row in rows}
    assert shown == {(item.criterion, item.verdict) for item in document.controls}
    assert all(row[1] == "random-model (mann-whitney)" for row in rows)
    separated = {item.criterion for item in document.controls if item.verdict == "separates"}
    assert "aggregate" in separated and "clarity" in separated  # quality 0.75 vs 0.2 on 24 features
    headers = page.evaluate("[...document.querySelectorAll('#variants thead th')].map(th => th.textContent)")
    for score in document.scores:  # a flagged score is marked in the ranked table's header
        assert any(
            header.startswith(score.capitalize() + (" (!)" if score in document.flagged_scores else ""))
            for header in headers
        )
    # per variant, how many features carry each label; they add up to its features
    labels = page.evaluate(
        "[...document.querySelectorAll('#labels tbody tr')].map(tr => [...tr.cells].slice(1).map(td => Number(td.textContent)))"
    )
    assert len(labels) == 2 and all(sum(counts) == len(FEATURES) for counts in labels)
    best = document.variants[0]
    assert sum(best.labels.values()) == len(FEATURES)
    page.goto(_feature_url(controls_site, best.run_id, 0))
    page.wait_for("document.getElementById('label').textContent.length > 0")
    label = page.evaluate("document.getElementById('label').textContent")
    assert label.startswith("Why its scores are what they are: ") and label.split(": ", 1)[1] in best.labels
    assert page.errors() == []
