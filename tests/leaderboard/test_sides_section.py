"""Input side vs output side on the leaderboard: the document's correlations and the scatter of a site built
from known runs (a variant's Faithfulness rising with its Clarity feature by feature, another's falling)."""

import json
import re
import xml.etree.ElementTree as ElementTree

import mlflow
import numpy as np
import pytest

from harness.track.runs import log_metrics, variant_run
from harness.track.store import ensure_experiment
from leaderboard import LeaderboardDocument, build_site

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</title><script>alert(1)</script> & "quotes"'
CLARITY = np.linspace(0.1, 0.8, 8)
FAITHFULNESS = {"rising": CLARITY**2, HOSTILE: 1 - CLARITY}


@pytest.fixture(scope="module")
def sides_site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sides")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = ensure_experiment("sides", uri)
    for name, faithfulness in FAITHFULNESS.items():
        with variant_run(experiment, name, name):
            log_metrics({"clarity_mean": float(CLARITY.mean()), "faithfulness_mean": float(faithfulness.mean()),
                         "features": 8})  # fmt: skip
            rows = [
                [feature, f"d{feature}", float(c), float(f)]
                for feature, (c, f) in enumerate(zip(CLARITY, faithfulness))
            ]
            table = {"columns": ["feature", "description", "clarity", "faithfulness"], "data": rows}
            mlflow.log_text(json.dumps(table), "tables/per_feature.json")
    index = build_site(["sides"], uri, folder / "site", progress=False)
    yield index
    mlflow.set_tracking_uri(None)


def test_the_document_holds_each_variants_rank_correlation_across_features(sides_site):
    document = LeaderboardDocument.model_validate_json((sides_site.parent / "leaderboard.json").read_text())
    by = {item.variant: item for item in document.input_output}
    assert set(by) == set(FAITHFULNESS)
    assert all(
        (item.input_score, item.output_score, item.features) == ("clarity", "faithfulness", 8) for item in by.values()
    )
    assert by["rising"].rho == pytest.approx(1.0) and by[HOSTILE].rho == pytest.approx(-1.0)


def test_the_page_shows_the_scatter_with_a_dot_per_feature_and_escapes_names(sides_site):
    html = sides_site.read_text()
    section = html[html.index('id="input-output"') :]
    svg = re.search(r"<svg.*?</svg>", section, re.S).group(0)
    root = ElementTree.fromstring(svg)
    assert not any(element.tag == f"{SVG}script" for element in root.iter())
    titles = [circle.find(f"{SVG}title") for circle in root.iter(f"{SVG}circle")]
    assert sum(title is not None for title in titles) == 16  # 8 features x 2 variants (legend dots have none)
    legend = " ".join(text.text or "" for text in root.iter(f"{SVG}text"))
    assert "rho +1.00, n=8" in legend and "rho -1.00, n=8" in legend
    assert "<script>alert(1)" not in section
