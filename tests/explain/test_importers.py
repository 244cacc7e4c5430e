"""Outside descriptions: each format written to a file, read back, bad rows reported by line."""

from __future__ import annotations

import csv
import json

import pytest

from harness.errors import ConfigError, EvaluationError
from harness.explain import DescriptionImportWarning, import_descriptions, validate_descriptions

DESCRIPTIONS = {0: "mentions of dates", 7: 'the token "def"', 42: "French words, accents: é, ç"}


def by_feature(table):
    return dict(zip(table["feature"].tolist(), table["description"].tolist()))


def problems_by_line(report):
    return {problem.line: problem for problem in report.problems}


def test_fade_results_round_trip_with_published_scores(tmp_path):
    scores = {0: (0.5, 0.9, 0.8, None), 7: (0.1, 0.2, 0.3, 0.4), 42: (1.0, 0.0, 1.0, 0.0)}
    keys = ("concept", "clarity", "responsiveness", "purity", "faithfulness")
    data = {str(feature): dict(zip(keys, (text, *scores[feature]))) for feature, text in DESCRIPTIONS.items()}
    path = tmp_path / "fade.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    table, report = import_descriptions(path)  # format detected
    assert report.format == "fade" and report.rows_kept == 3 and not report.problems
    assert by_feature(table) == DESCRIPTIONS
    assert set(table["explainer"]) == {"import:fade"}
    assert table["published_clarity"].tolist() == [0.5, 0.1, 1.0]
    assert table["published_faithfulness"].isna().tolist() == [True, False, False]
    validate_descriptions(table)


def test_fade_malformed_rows_are_reported_by_line_and_good_rows_kept(tmp_path):
    path = tmp_path / "fade.json"
    path.write_text(
        "{\n"
        '  "12": {"concept": "dates", "clarity": 0.5, "responsiveness": 0.9, "purity": 0.8, "faithfulness": null},\n'
        '  "x": {"concept": "bad key", "clarity": 0.5, "responsiveness": 0.9, "purity": 0.8, "faithfulness": null},\n'
        '  "13": {"concept": "  ", "clarity": 0.5, "responsiveness": 0.9, "purity": 0.8, "faithfulness": 0.1},\n'
        '  "14": {"concept": "cats", "clarity": 1.5, "responsiveness": 0.9, "purity": 0.8, "faithfulness": 0.1},\n'
        '  "15": 3,\n'
        '  "16": {"concept": "  dogs ", "clarity": 0.1, "responsiveness": true, "purity": 0.3, "faithfulness": 0.4},\n'
        '  "17": {"concept": "birds", "clarity": 0.1, "responsiveness": 0.2, "purity": 0.3, "faithfulness": 0.4}\n'
        "}\n"
    )
    with pytest.warns(DescriptionImportWarning, match="kept 2 of 7 rows, 5 rejected"):
        table, report = import_descriptions(path, format="fade")
    assert by_feature(table) == {12: "dates", 17: "birds"}
    problems = problems_by_line(report)
    assert sorted(problems) == [3, 4, 5, 6, 7]
    assert problems[3].column == "feature" and problems[4].column == "description"
    assert problems[5].column == "published_clarity" and "1.5" in problems[5].message
    assert "expected a JSON object" in problems[6].message
    assert problems[7].column == "published_responsiveness"  # a boolean is not a score


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_neuronpedia_exports_round_trip(tmp_path, layout):
    records = [
        {
            "modelId": "gpt2-small",
            "layer": "6-res-jb",
            "index": str(feature),
            "description": text,
            "explanationModelName": "gpt-4o-mini",
            "typeName": "oai_token-act-pair",
        }
        for feature, text in DESCRIPTIONS.items()
    ]
    path = tmp_path / f"export.{layout}"
    if layout == "json":
        path.write_text(json.dumps(records, indent=1))
    else:
        path.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    table, report = import_descriptions(path)
    assert report.format == "neuronpedia" and not report.problems
    assert by_feature(table) == DESCRIPTIONS
    assert set(table["layer"]) == {"6-res-jb"} and set(table["explanation_model"]) == {"gpt-4o-mini"}


def test_neuronpedia_bad_lines_duplicates_and_selection(tmp_path):
    lines = [
        {"modelId": "m", "layer": "6-res", "index": "1", "description": "one", "explanationModelName": "a"},
        "not json at all {",
        {"modelId": "m", "layer": "6-res", "index": "-2", "description": "negative", "explanationModelName": "a"},
        {"modelId": "m", "layer": "6-res", "index": "1", "description": "one again", "explanationModelName": "b"},
        {"modelId": "m", "layer": "6-res", "index": "3", "description": None, "explanationModelName": "a"},
        {"modelId": "m", "layer": "6-res", "index": 4, "description": "four", "explanationModelName": "b"},
    ]
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    with pytest.warns(DescriptionImportWarning):
        table, report = import_descriptions(path, format="neuronpedia")
    assert by_feature(table) == {1: "one", 4: "four"}
    problems = problems_by_line(report)
    assert sorted(problems) == [2, 3, 4, 5]
    assert "invalid JSON" in problems[2].message and "already given at line 1" in problems[4].message
    assert (problems[5].column, problems[5].message) == ("description", "missing")
    assert report.rows_read == 6 and report.rows_kept == 2

    with pytest.warns(DescriptionImportWarning, match="kept 2 of 6 rows, 3 filtered out, 1 rejected"):
        table, report = import_descriptions(path, format="neuronpedia", select={"explanation_model": "b"})
    assert by_feature(table) == {1: "one again", 4: "four"}
    assert report.rows_filtered == 3 and sorted(problems_by_line(report)) == [2]  # rows left out are not checked
    with pytest.raises(ConfigError, match="cannot select on 'model'"):
        import_descriptions(path, format="neuronpedia", select={"model": "b"})


def test_neuron_explainer_files_round_trip(tmp_path):
    def record(layer, neuron, text, nested=True, score=0.42):
        ids = {"layer_index": layer, "neuron_index": neuron}
        head = {"neuron_id": ids} if nested else ids
        scored = {"explanation": text, "scored_simulation": {"ev_correlation_score": score}}
        return {**head, "scored_explanations": [scored]}

    single = tmp_path / "0.json"
    single.write_text(json.dumps(record(5, 7, " the token def")))
    table, report = import_descriptions(single)
    assert report.format == "neuron-explainer"
    assert by_feature(table) == {7: "the token def"} and table.loc[0, "layer"] == 5
    assert table.loc[0, "explanation_score"] == pytest.approx(0.42)

    many = tmp_path / "layer5.jsonl"
    rows = [record(5, feature, text, nested=feature != 7) for feature, text in DESCRIPTIONS.items()]
    rows.insert(1, {"neuron_id": {"layer_index": 5, "neuron_index": 9}, "scored_explanations": []})
    rows.append(record(6, 0, "another layer"))
    many.write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.warns(DescriptionImportWarning, match="line 2, scored_explanations"):
        table, report = import_descriptions(many, select={"layer": "5"})
    assert by_feature(table) == DESCRIPTIONS and report.rows_filtered == 1


def test_csv_round_trip_with_multiline_fields_and_bad_rows(tmp_path):
    path = tmp_path / "descriptions.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["feature", "description", "note"])
        writer.writerow([0, "line one\nline two", "x"])  # lines 2-3
        writer.writerow(["abc", "bad index", ""])  # line 4
        writer.writerow([7, 'the token "def"', ""])  # line 5
        writer.writerow([8, "", ""])  # line 6
        handle.write("9,too few\n")  # line 7
        writer.writerow([42, DESCRIPTIONS[42], ""])  # line 8
    with pytest.warns(DescriptionImportWarning):
        table, report = import_descriptions(path)
    assert by_feature(table) == {0: "line one\nline two", 7: 'the token "def"', 42: DESCRIPTIONS[42]}
    assert sorted(problems_by_line(report)) == [4, 6, 7]
    assert problems_by_line(report)[4].column == "feature"


def test_a_file_without_good_rows_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("feature,description\n-1,neg\n3,\n")
    expected = "(?s)no usable descriptions.*2 rejected.*line 2, feature.*line 3, description"
    with pytest.raises(EvaluationError, match=expected):
        import_descriptions(path)


@pytest.mark.parametrize(
    ("name", "text", "format", "error", "expected"),
    [
        ("missing.csv", None, "csv", ConfigError, "does not exist"),
        ("no_header.csv", "feat,desc\n1,a\n", "csv", EvaluationError, "lacks the column"),
        ("broken.json", '{\n "1": {"concept": "a"},\n "2": {"concept": \n}', "fade", EvaluationError, "JSON at line 4"),
        ("list.json", '[{"concept": "a"}]', "fade", EvaluationError, "one JSON object keyed by feature index"),
        ("what.json", '{"hello": "world"}', "auto", ConfigError, "cannot tell the format"),
        ("x.json", "[]", "nope", ConfigError, "unknown import format"),
    ],
)
def test_file_level_problems_are_clear_errors(tmp_path, name, text, format, error, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=expected):
        import_descriptions(path, format=format)
