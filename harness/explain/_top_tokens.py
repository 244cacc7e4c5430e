"""`top-tokens` baseline: no LLM; the description lists the tokens the feature fires on most."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.config import identity_payload
from harness.explain._explainer import Explainer
from harness.explain._records import FeatureRecord
from harness.explain._selection import select_examples
from harness.explain._table import Description


def top_tokens(tokens_at_max: Sequence[str], activations_at_max: Sequence[float], num_tokens: int) -> list[str]:
    """Distinct tokens ranked by how many examples peak on them, then by their summed peak activation.

    Tokens are compared without surrounding whitespace (" the" and "the" are one token) unless they are
    only whitespace.
    """
    count: dict[str, int] = {}
    total: dict[str, float] = {}
    for token, activation in zip(tokens_at_max, activations_at_max):
        key = token.strip() or token
        count[key] = count.get(key, 0) + 1
        total[key] = total.get(key, 0.0) + float(activation)
    ranked = sorted(count, key=lambda key: (-count[key], -total[key]))
    return ranked[:num_tokens]


class TopTokensExplainer(Explainer):
    """The peak token of each selected example, most frequent first, as a quoted list."""

    needs_pools = True

    def settings(self) -> dict[str, Any]:
        return {
            "selection": identity_payload(self.config.selection),
            "top_tokens": identity_payload(self.config.top_tokens),
        }

    def explain(self, records: Sequence[FeatureRecord], client: object = None) -> list[Description]:
        descriptions = []
        for record in records:
            examples = select_examples(record, self.config.selection).examples
            if not examples:
                descriptions.append(Description(record.feature, None, error="the feature has no activating examples"))
                continue
            peaks = [int(np.argmax(example.activations)) for example in examples]
            tokens = top_tokens(
                [example.tokens[peak] for example, peak in zip(examples, peaks)],
                [float(example.activations[peak]) for example, peak in zip(examples, peaks)],
                self.config.top_tokens.num_tokens,
            )
            descriptions.append(
                Description(
                    feature=record.feature,
                    description=", ".join(json.dumps(token, ensure_ascii=False) for token in tokens),
                    example_ids=tuple(example.sample_id for example in examples),
                )
            )
        return descriptions
