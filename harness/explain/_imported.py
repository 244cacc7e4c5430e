"""`import` explainer: descriptions written elsewhere, compared as one more pipeline variant."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import identity_payload
from harness.explain._explainer import Explainer
from harness.explain._importing import import_descriptions
from harness.explain._records import FeatureRecord
from harness.explain._table import Description, descriptions_from_table


class ImportedExplainer(Explainer):
    """Each feature's description from the imported file; features the file lacks get an error row."""

    def settings(self) -> dict[str, Any]:
        path = Path(self.config.imported.path or "")
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return {"imported": identity_payload(self.config.imported), "file_sha256": digest}

    def explain(self, records: Sequence[FeatureRecord], client: object = None) -> list[Description]:
        settings = self.config.imported
        table, _report = import_descriptions(settings.path, settings.format, settings.select or None)
        by_feature = {description.feature: description for description in descriptions_from_table(table)}
        return [
            by_feature.get(record.feature)
            or Description(record.feature, None, error=f"feature {record.feature} is not in {settings.path}")
            for record in records
        ]
