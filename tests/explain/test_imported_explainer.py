"""The `import` explainer turns an outside descriptions file into a pipeline variant."""

import json

import pytest

from harness.config import ExplainConfig
from harness.explain import generate_descriptions, settings_hash


def test_imported_descriptions_cover_the_records_and_missing_features_say_why(tmp_path, make_planted_record):
    records = [make_planted_record(feature, planted) for feature, planted in ((4, "dog"), (9, "cat"))]
    path = tmp_path / "fade.json"
    features = [record.feature for record in records]
    path.write_text(json.dumps({str(features[0]): {"concept": "the token dog", "clarity": 0.9}}))
    config = ExplainConfig(explainer="import", imported={"path": str(path)})
    table = generate_descriptions(records, config)
    assert table.set_index("feature").loc[features[0], "description"] == "the token dog"
    missing = table[table["feature"] != features[0]]
    assert missing["description"].isna().all()
    assert missing["error"].str.contains("is not in").all()
    before = settings_hash(config)
    path.write_text(json.dumps({str(features[0]): {"concept": "the token cat"}}))
    assert settings_hash(config) != before, "editing the file must change the variant's identity"


def test_import_without_a_path_is_a_config_error():
    with pytest.raises(ValueError, match="explain.imported.path"):
        ExplainConfig(explainer="import")
