"""What an explainer reads about one feature: its top examples, a pool of other examples, and what it does to
the output (output-centric explainers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.activations.types import ActivatingExample, ActivationSet, SAEBenchSample, WindowSample
from harness.explain._output_evidence import OutputEvidence


@dataclass(frozen=True)
class FeatureRecord:
    """One feature's examples, each with per-token activations.

    `top_examples` are the highest-activating samples, descending (what the activation engine keeps).
    `pool` holds other samples of the same corpus with per-token activations, drawn across the activation
    range down to zero; the stratified and random selections and the contrast examples draw from it.
    `windows` holds delphi's test set of the feature (scorers.convention: delphi), `saebench` SAEBench's
    examples (the saebench scorer), when drawn. `output` holds its output-side evidence (VocabProj's and
    TokenChange's token lists) when its explainer reads it (`Explainer.needs_output_evidence`).
    """

    feature: int
    top_examples: tuple[ActivatingExample, ...]
    pool: tuple[ActivatingExample, ...] = field(default=())
    windows: WindowSample | None = None
    saebench: SAEBenchSample | None = None
    output: OutputEvidence | None = None

    def candidates(self) -> list[ActivatingExample]:
        """Top examples and pool, one entry per sample, by descending per-sample activation."""
        seen: set[int] = set()
        unique = []
        for example in (*self.top_examples, *self.pool):
            if example.sample_id not in seen:
                seen.add(example.sample_id)
                unique.append(example)
        return sorted(unique, key=lambda example: -example.max_activation)

    def max_token_activation(self) -> float:
        """Largest per-token activation over every example: the 10 of the 0-10 scale."""
        values = [float(example.activations.max()) for example in self.candidates() if example.activations.size]
        return max(values, default=0.0)


def build_feature_records(
    activation_set: ActivationSet,
    pools: Mapping[int, Sequence[ActivatingExample]] | None = None,
    windows: Mapping[int, WindowSample] | None = None,
    saebench: Mapping[int, SAEBenchSample] | None = None,
    output: Mapping[int, OutputEvidence] | None = None,
) -> list[FeatureRecord]:
    """One FeatureRecord per extracted feature, in `activation_set.feature_ids` order.

    Args:
        activation_set: the activation engine's output; its `top_examples` become the records' top examples.
        pools: feature -> other examples with per-token activations (e.g. drawn per activation quantile);
            features missing here get an empty pool, which the 'top' strategy does not need.
        windows: feature -> delphi's test windows (harness.activations.delphi_windows), for the delphi convention.
        saebench: feature -> SAEBench's examples (harness.activations.saebench_examples), for the saebench scorer.
        output: feature -> its output evidence (harness.explain._output_evidence), for output-centric explainers.
    """
    pools = pools or {}
    windows = windows or {}
    saebench = saebench or {}
    output = output or {}
    return [
        FeatureRecord(
            feature=int(feature),
            top_examples=tuple(activation_set.top_examples.get(int(feature), ())),
            pool=tuple(pools.get(int(feature), ())),
            windows=windows.get(int(feature)),
            saebench=saebench.get(int(feature)),
            output=output.get(int(feature)),
        )
        for feature in activation_set.feature_ids
    ]
