"""A plain-text view of the top-activating samples, for the terminal."""

from __future__ import annotations

from harness.activations.types import ActivatingExample, ActivationSet

MAX_MARK = ("«", "»")


def mark_max_token(example: ActivatingExample) -> str:
    """The example's tokens joined, with the token of largest |activation| between « and », on one line."""
    pieces = list(example.tokens)
    if pieces:
        pieces[example.max_position] = f"{MAX_MARK[0]}{pieces[example.max_position]}{MAX_MARK[1]}"
    return "".join(pieces).replace("\r", "").replace("\n", "⏎")


def top_examples_report(activation_set: ActivationSet, n_features: int = 5, n_examples: int = 5) -> str:
    """The top-activating samples of the first `n_features` features, `n_examples` each.

    Args:
        activation_set: the result of extract_activations.
        n_features: how many features to show, in the set's feature order.
        n_examples: how many samples per feature, highest activation first.
    """
    lines: list[str] = []
    for feature in activation_set.feature_ids[:n_features].tolist():
        examples = activation_set.top_examples.get(feature, [])
        lines.append(
            f"feature {feature}: max |activation| {activation_set.max_abs(feature):.4g} "
            f"over {activation_set.sample_ids.size} samples"
        )
        for rank, example in enumerate(examples[:n_examples], start=1):
            lines.append(
                f"  {rank:>2}. {example.max_activation:+.4g}  sample {example.sample_id}: {mark_max_token(example)}"
            )
        if not examples:
            lines.append("  (no samples)")
    return "\n".join(lines)
