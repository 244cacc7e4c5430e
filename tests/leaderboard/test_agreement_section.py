"""Agreement between scorers on the leaderboard: the heatmap's cells, and the matrix of a site built from known runs."""

import json
import math
import re
import xml.etree.ElementTree as ElementTree

import mlflow
import pandas as pd
import pytest

from harness.track.agreement import rank_correlations
from harness.track.runs import log_metrics, variant_run
from harness.track.store import ensure_experiment
from leaderboard import LeaderboardDocument, build_site
from leaderboard._plots import rank_correlation_svg

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</title><script>alert(1)</script> & "quotes"'
# Four variants' score means; faithfulness is defined for two of them, embedding is the same for all.
MEANS = {
    "a": {"clarity": 0.9, "responsiveness": 0.2, "purity": 0.6, "faithfulness": 0.5, "embedding": 0.5},
    "b": {"clarity": 0.7, "responsiveness": 0.4, "purity": 0.5, "faithfulness": None, "embedding": 0.5},
    "c": {"clarity": 0.5, "responsiveness": 0.4, "purity": 0.4, "faithfulness": 0.1, "embedding": 0.5},
    "d": {"clarity": 0.3, "responsiveness": 0.8, "purity": 0.1, "faithfulness": None, "embedding": 0.5},
}


def _cells(svg: str) -> dict[tuple[str, str], ElementTree.Element]:
    root = ElementTree.fromstring(svg)
    assert not any(element.tag == f"{SVG}script" for element in root.iter())
    return {tuple(g.get("data-pair").split("|")): g for g in root.iter(f"{SVG}g") if "corr-cell" in g.get("class")}


def _texts(cell: ElementTree.Element) -> list[str]:
    return [text.text for text in cell.iter(f"{SVG}text")]


def test_heatmap_has_one_cell_per_pair_with_rho_and_n_or_a_dash_and_the_reason():
    table = pd.DataFrame(
        {"clarity_mean": [0.1, 0.5, 0.9], "purity_mean": [0.2, 0.6, 0.7], f"{HOSTILE}_mean": [1, 1, 1]}
    )
    cells = _cells(rank_correlation_svg(rank_correlations(table, ["clarity", "purity", HOSTILE])))
    assert set(cells) == {("clarity", "purity"), ("clarity", HOSTILE), ("purity", HOSTILE)}
    assert _texts(cells["clarity", "purity"]) == ["1.00", "n = 3"]
    assert cells["clarity", "purity"].find(f"{SVG}rect").get("fill-opacity") == "0.85"
    undefined = cells["clarity", HOSTILE]
    assert _texts(undefined) == ["—", "n = 3"]
    assert (
        undefined.find(f"{SVG}title").text
        == f"clarity vs {HOSTILE}: undefined, {HOSTILE} is constant across the 3 variants"
    )
    assert undefined.find(f"{SVG}rect").get("class") == "corr undefined"


def test_negative_correlations_are_the_other_colour():
    table = pd.DataFrame({"clarity_mean": [0.1, 0.5, 0.9], "purity_mean": [0.3, 0.2, 0.1]})
    rect = _cells(rank_correlation_svg(rank_correlations(table)))["clarity", "purity"].find(f"{SVG}rect")
    assert rect.get("class") == "corr neg" and rect.get("fill-opacity") == "0.85"


@pytest.fixture(scope="module")
def known_site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agreement")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = ensure_experiment("agreement", uri)
    for name, means in MEANS.items():
        with variant_run(experiment, name, name):
            log_metrics({f"{score}_mean": value for score, value in means.items()} | {"features": 1})
            table = {"columns": ["feature", "description", *means], "data": [[0, name, *means.values()]]}
            mlflow.log_text(json.dumps(table), "tables/per_feature.json")
    index = build_site(["agreement"], uri, folder / "site", progress=False)
    yield index
    mlflow.set_tracking_uri(None)


def test_built_site_holds_the_matrix_of_the_known_runs(known_site):
    document = LeaderboardDocument.model_validate_json((known_site.parent / "leaderboard.json").read_text())
    agreement = document.scorer_agreement
    assert agreement.variants == 4
    assert agreement.scores == ["clarity", "responsiveness", "purity", "faithfulness", "embedding"]
    assert agreement.pair("clarity", "purity").rho == pytest.approx(1.0)
    # clarity ranks 4, 3, 2, 1 against responsiveness 1, 2.5, 2.5, 4: rho = -4.5 / sqrt(5 * 4.5)
    assert agreement.pair("clarity", "responsiveness").rho == pytest.approx(-4.5 / math.sqrt(22.5))
    assert agreement.pair("clarity", "faithfulness").reason == "fewer than 3 variants define both scores (2)"
    assert agreement.pair("purity", "embedding").reason == "embedding is constant across the 4 variants"
    assert len(agreement.pairs) == 10

    html = known_site.read_text()
    section = html[html.index('id="agreement"') :]
    cells = _cells(re.search(r"<svg.*?</svg>", section, re.S).group(0))
    assert _texts(cells["clarity", "responsiveness"]) == ["-0.95", "n = 4"]
    assert _texts(cells["clarity", "faithfulness"]) == ["—", "n = 2"]
    assert "across all 4 variants of this leaderboard" in " ".join(section.split())
