"""The leaderboard's tie marks come from the paired test, seen in a real headless Chromium.

Runs are logged to the shared sqlite store (experiment "paired") with per-feature tables built so that the
unpaired 95% intervals of the two best variants overlap while the paired test separates them clearly, a
copy of a variant that must tie, and a variant with too few features for a test.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from leaderboard_runs import PAYLOAD, config_params
from paired_reference import expected_ties

from harness.stages import score_metrics
from harness.track.runs import log_metrics, log_params, variant_run
from harness.track.store import ensure_experiment
from leaderboard import LeaderboardDocument, build_site

FEATURES = 40


def _log(experiment_id: str, name: str, clarity: np.ndarray, features: range) -> str:
    per_feature = pd.DataFrame({"feature": list(features), "description": [f"feature {f}" for f in features],
                                "clarity": clarity})  # fmt: skip
    with variant_run(experiment_id, f"paired-{name}", name) as run:
        log_params(config_params({}))
        log_metrics(score_metrics(per_feature, 1000, 0, ("clarity",)))
        mlflow.log_table(per_feature, "tables/per_feature.json")
    return run.run_id


@pytest.fixture(scope="module")
def paired_site(store, tmp_path_factory):
    rng = np.random.default_rng(12)
    difficulty = rng.uniform(0.1, 0.9, FEATURES)  # features differ a lot in how well they can be described
    experiment_id = ensure_experiment("paired", store.uri)
    runs = {
        "steadily better": _log(
            experiment_id, "steadily better", difficulty + 0.04 + rng.normal(0, 0.01, FEATURES), range(FEATURES)
        ),
        "baseline": _log(experiment_id, "baseline", difficulty, range(FEATURES)),
        "baseline again": _log(experiment_id, "baseline again", difficulty.copy(), range(FEATURES)),
        "six features": _log(experiment_id, "six features", np.full(6, 0.05), range(6)),
    }
    index = build_site(
        ["paired"], store.uri, tmp_path_factory.mktemp("paired") / "site", title="Paired", progress=False
    )
    document = LeaderboardDocument.model_validate_json((index.parent / "leaderboard.json").read_text())
    return index, document, runs


def test_tie_marks_on_the_page_come_from_the_paired_test(paired_site, store, page):
    index, document, runs = paired_site
    variants = document.variants
    names = [v.variant for v in variants]
    assert names[0] == "steadily better" and set(names[1:3]) == {"baseline", "baseline again"}
    assert names[3] == "six features"
    best, second = variants[0].scores["clarity"], variants[1].scores["clarity"]
    assert second.ci_high >= best.ci_low, "the unpaired 95% intervals overlap (the old rule would tie them)"

    # The marks the page shows, against an independent Wilcoxon + Holm on the runs' own per-feature tables.
    tied = expected_ties(store.uri, [v.run_id for v in variants], "aggregate")
    assert tied == [False, True, False]
    page.goto(index.as_uri())
    shown = page.evaluate(
        "[...document.querySelectorAll('#variants tbody tr')].map(tr => tr.querySelector('.rank').textContent)"
    )
    assert shown == ["1", "2", "2=", "4"]
    cells = page.evaluate(
        "[...document.querySelectorAll('#variants tbody .vs-above')].map(c => [c.textContent, c.title])"
    )
    assert cells[0] == ["", ""]
    assert cells[1][0].startswith("-0.04") and cells[1][0].endswith("p <0.001") and "(different)" in cells[1][1]
    assert cells[2][0] == "+0.000 \u00b7 p 1.000" and "(tied)" in cells[2][1]
    assert cells[3][0] == "no test" and cells[3][1] == "only 6 paired features define aggregate (a test needs 10)"
    assert page.evaluate("document.querySelector('#variants tbody tr:nth-child(2) .rank').title") == ""
    assert "paired test" in page.evaluate("document.querySelector('#variants tbody tr:nth-child(3) .rank').title")

    # Switching the ranking to clarity shows clarity's comparisons (the same here: one score).
    page.evaluate(
        "const s = document.getElementById('rank-by'); s.value = 'clarity'; s.dispatchEvent(new Event('change'))"
    )
    assert page.evaluate("[...document.querySelectorAll('#variants tbody .rank')].map(c => c.textContent)") == [
        "1",
        "2",
        "2=",
        "4",
    ]
    assert "clarity" in page.evaluate("document.querySelector('#variants tbody tr:nth-child(4) .vs-above').title")

    # The variant page says it in words.
    tied_one = variants[2]
    page.goto((index.parent / tied_one.page).as_uri())
    text = page.evaluate("document.getElementById('vs-above').textContent")
    assert f"vs {variants[1].variant} (ranked just above)" in " ".join(text.split())
    assert "Holm-adjusted p = 1" in text and text.strip().endswith("tied.")
    assert page.evaluate("document.querySelector('.lede').textContent").startswith("Rank 2=")
    assert page.errors() == []


def test_the_comparison_with_a_hostile_variant_above_stays_text(hostile_site, page):
    document = LeaderboardDocument.model_validate_json((hostile_site.folder / "leaderboard.json").read_text())
    above, below = document.variants[0], document.variants[1]
    assert above.variant.startswith("hostile") and below.ranks[document.rank_by].vs_above.reference == above.variant
    page.goto((hostile_site.folder / below.page).as_uri())
    page.browser.pump(0.3)
    assert page.evaluate("document.querySelector('#vs-above q').textContent") == above.variant
    page.goto(hostile_site.index.as_uri())
    page.browser.pump(0.3)
    title = page.evaluate(f"document.querySelector('#variants tr[data-key=\"{below.run_id}\"] .vs-above').title")
    assert PAYLOAD in title or title.startswith("only")  # the name as an attribute value, or no test
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], svg[onload], [onerror]').length") == 0
    assert page.errors() == []
