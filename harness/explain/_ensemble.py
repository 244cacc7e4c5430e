"""`ensemble`: the descriptions of several explainers joined into one (the concatenation ensemble of Gur-Arieh
et al. 2025: VocabProj's, the max-activation one and TokenChange's, in that order by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.config import ExplainConfig
from harness.explain._explainer import Explainer
from harness.explain._records import FeatureRecord
from harness.explain._table import Description, is_llm_failure
from harness.files import identity_hash
from harness.registry import EXPLAINERS

# Between two members' descriptions: one line each would break the "Concept: ..." lines of FADE's prompts.
SEPARATOR = " / "


def joined(feature: int, parts: Sequence[Description]) -> Description:
    """One feature's ensemble description from its members' (in member order): their texts joined, their
    costs summed. A member whose LLM failed fails the feature (a rerun asks again); a member without a
    description for its data is left out; none left: the members' reasons."""
    failed = next((part for part in parts if is_llm_failure(part.error)), None)
    described = [part for part in parts if part.description is not None]
    summed = Description(
        feature,
        None,
        example_ids=tuple(dict.fromkeys(sample for part in parts for sample in part.example_ids)),
        prompt_hash=identity_hash([part.prompt_hash for part in parts])[:16],
        prompt_tokens=sum(part.prompt_tokens for part in parts),
        completion_tokens=sum(part.completion_tokens for part in parts),
        cost_usd=sum(part.cost_usd for part in parts),
    )
    if failed is not None:
        return replace(summed, error=failed.error)
    if not described:
        return replace(summed, error="; ".join(str(part.error) for part in parts))
    return replace(summed, description=SEPARATOR.join(str(part.description) for part in described))


class EnsembleExplainer(Explainer):
    """Runs each explainer of `ensemble.members` on the same records and joins their descriptions."""

    needs_pools = True  # a member may read pools; the stage draws them only when the selection asks

    def __init__(self, config: ExplainConfig) -> None:
        super().__init__(config)
        self.members = [EXPLAINERS.get(name)(config) for name in config.ensemble.members]

    @property
    def needs_llm(self) -> bool:
        return any(member.needs_llm for member in self.members)

    @property
    def needs_output_evidence(self) -> frozenset[str]:
        return frozenset().union(*(member.needs_output_evidence for member in self.members))

    def settings(self) -> dict[str, Any]:
        return {
            "members": [
                {"explainer": name, "settings": member.settings()}
                for name, member in zip(self.config.ensemble.members, self.members)
            ]
        }

    def explain(self, records: Sequence[FeatureRecord], client: Any) -> list[Description]:
        per_member = [member.explain(records, client if member.needs_llm else None) for member in self.members]
        return [joined(record.feature, parts) for record, parts in zip(records, zip(*per_member))]
