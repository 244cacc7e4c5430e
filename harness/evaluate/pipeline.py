"""FADE over a table of descriptions: one activation pass for every feature, LLM work concurrent across
features, results persisted per feature so an interrupted run resumes.

Per feature (its own random stream from (fade.seed, feature)):
  Clarity        generation calls -> synthetic samples -> their activations -> Gini vs natural samples
  Responsiveness natural samples chosen by activation -> ratings (+ retries) -> Gini / Purity = AP
  Faithfulness   only when Clarity and Responsiveness pass gini_threshold: steered generation on random
                 natural prompts for every factor -> ratings of the continuations -> p2 -> faithfulness
Clarity and Responsiveness run side by side; subject-model work (forward passes, generate) runs on one
worker thread, one job at a time, so one feature's steering hook never meets another's pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from harness.activations import ActivationSet, activations_for_texts, extract_activations
from harness.config import OPERATIONAL_LLM_FIELDS, HarnessConfig
from harness.corpus import corpus_fingerprint, load_corpus
from harness.errors import EvaluationError
from harness.files import content_hash
from harness.evaluate import plots
from harness.evaluate.calls import FeatureCalls, RaterBackend
from harness.evaluate.concurrency import gather_or_cancel
from harness.evaluate.clarity import ClarityOutcome, score_clarity
from harness.evaluate.continuations import Continuations, generate_continuations
from harness.evaluate.faithfulness import FaithfulnessOutcome, score_faithfulness
from harness.evaluate.metrics import GiniAP, faithfulness_gate
from harness.evaluate.rating import UNRATED, rating_counts
from harness.evaluate.responsiveness import RatedNaturalSamples, rate_natural_samples, score_responsiveness
from harness.evaluate.scores import FeatureScores, Score
from harness.evaluate.store import FeatureResult, ResultStore, factor_label
from harness.llm import LLMClient, Usage, UsageLedger
from harness.llm.tracing import CallTracer
from harness.model import LoadedModel, load_subject_model
from harness.raters import build_rater
from harness.sites import FeatureSite, build_site

T = TypeVar("T")

FAITHFULNESS_DISABLED = "faithfulness_disabled"
NO_DESCRIPTION = "no_description"
# Settings of the rater that change how calls are made, not what comes back (the address too, as in the LLM
# cache key: a local server's port changes between runs): they do not invalidate results.
_OPERATIONAL_RATER_SETTINGS = OPERATIONAL_LLM_FIELDS | {"api_base"}
_ACTIVATION_RESULT_SETTINGS = ("max_length", "skip_special_tokens", "skip_first_positions")


@dataclass
class EvaluationResult:
    """The FADE results of every described feature of one evaluation.

    `computed` were evaluated by this call, `reused` read from an earlier (interrupted) run in the same
    output folder; `skipped` are features whose row had no description, with the reason.
    """

    output_dir: Path
    results: dict[int, FeatureResult]
    scores: pd.DataFrame
    summary: dict[str, Any]
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    llm_usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class _Run:
    """What every feature of a run shares: subject model, site, natural samples, rater, worker threads."""

    config: HarnessConfig
    loaded_model: LoadedModel
    site: FeatureSite
    texts: list[str]
    sample_ids: np.ndarray
    activations: ActivationSet
    backend: RaterBackend
    model_thread: ThreadPoolExecutor
    io_thread: ThreadPoolExecutor

    async def on_model(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, partial(function, *args, **kwargs))

    async def on_io(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io_thread, partial(function, *args))


@dataclass(frozen=True)
class _FeatureOutcome:
    feature: int
    description: str
    key: str
    calls: FeatureCalls
    clarity: ClarityOutcome
    rated: RatedNaturalSamples
    responsiveness: GiniAP  # gini = Responsiveness, average_precision = Purity
    faithfulness: FaithfulnessOutcome | Score  # a Score when not computed (it says why)
    steering_reference: float | None


def evaluate_descriptions(
    config: HarnessConfig,
    descriptions: pd.DataFrame,
    output_dir: str | Path,
    progress: bool = True,
    *,
    on_feature_done: Callable[[FeatureResult], None] | None = None,
    usage_ledger: UsageLedger | None = None,
    call_tracer: CallTracer | None = None,
) -> EvaluationResult:
    """Score every (feature, description) row with FADE on the config's site, corpus and rater.

    Features whose result is already in `output_dir` (same description and settings) are not
    computed again; the results are the same as an uninterrupted run's. Undefined scores (no rated-2
    samples, no synthetic samples, faithfulness not computed, ...) are null with a reason; the run goes on.

    Args:
        config: the whole config; uses model, corpus, site, activations and fade.
        descriptions: a table with `feature` and `description` columns (e.g. from `read_descriptions`
            or an explainer); rows without a description are skipped.
        output_dir: where per-feature results, tables and plots, scores.csv and summary.json go.
        progress: show progress bars.
        on_feature_done: called with each feature's result right after it is stored.
        usage_ledger: where the LLM clients also append every count (a tracked run sums it over processes).
        call_tracer: records every LLM call as an MLflow trace of the tracked run (harness.llm.tracing).

    Raises:
        EvaluationError: the table lacks the columns or has duplicate / invalid features.
        SiteError: a feature is out of range for the site.
        LLMError: the rater backend fails before answering any call (key, model or address wrong).
    """
    table = _checked_descriptions(descriptions)
    described = {int(row.feature): row.description for row in table.itertuples() if isinstance(row.description, str)}
    skipped = {int(feature): NO_DESCRIPTION for feature in table["feature"] if feature not in described}
    store = ResultStore(output_dir)
    loaded_model = load_subject_model(config.model)
    corpus = load_corpus(config.corpus, loaded_model.tokenizer)
    site = build_site(config.site, loaded_model)
    features = np.fromiter(described, dtype=np.int64, count=len(described))
    site.resolve_features(features)
    base_key = _base_key(config, loaded_model, site, corpus)
    keys = {
        feature: content_hash({**base_key, "feature": feature, "description": text}) for feature, text in described.items()
    }
    results = {feature: result for feature, key in keys.items() if (result := store.load(feature, key)) is not None}
    pending = [feature for feature in keys if feature not in results]
    usage = Usage()
    if pending:
        # One pass over the site's configured features when they cover the described ones (the explain
        # stage's pass, cached), else over every described feature, finished ones too: either way the same
        # numbers whichever features are left to compute, in chunks or after an interruption.
        selection = site.resolve_features(site.selection)
        extracted = selection if np.isin(features, selection).all() else np.unique(features)
        activations = extract_activations(
            loaded_model, site, corpus, config.activations, features=extracted, progress=progress
        )
        generator = LLMClient(config.fade.generation_llm, config.activations.cache_dir, progress=False)
        rater = (
            build_rater(config.fade, config.activations.cache_dir, corpus["text"].tolist(), progress=False)
            if config.fade.generator is not None
            else generator
        )
        for client in (generator, rater):
            if isinstance(client, LLMClient):
                client.ledger = usage_ledger
                client.tracer = call_tracer
        with (
            ThreadPoolExecutor(1, thread_name_prefix="fade-model") as model_thread,
            ThreadPoolExecutor(1, thread_name_prefix="fade-io") as io_thread,
        ):
            run = _Run(
                config=config,
                loaded_model=loaded_model,
                site=site,
                texts=corpus.set_index("sample_id").loc[activations.sample_ids, "text"].tolist(),
                sample_ids=activations.sample_ids,
                activations=activations,
                backend=RaterBackend(generator, rater),
                model_thread=model_thread,
                io_thread=io_thread,
            )
            work = [(feature, described[feature], keys[feature]) for feature in pending]
            try:
                asyncio.run(_evaluate_all(run, store, work, results, progress, on_feature_done))
            finally:
                usage = generator.usage + (rater.usage if rater is not generator else Usage())
                for client in {id(generator): generator, id(rater): rater}.values():
                    client.close()
    ordered = [results[feature] for feature in keys]
    scores, summary = store.write_run(ordered, skipped)
    return EvaluationResult(
        output_dir=Path(output_dir),
        results={result.feature: result for result in ordered},
        scores=scores,
        summary=summary,
        computed=[feature for feature in keys if feature in pending],
        reused=[feature for feature in keys if feature not in pending],
        skipped=skipped,
        llm_usage=usage,
    )


def _checked_descriptions(descriptions: pd.DataFrame) -> pd.DataFrame:
    missing = {"feature", "description"} - set(descriptions.columns)
    if missing:
        raise EvaluationError(
            f"the descriptions table lacks the column(s) {', '.join(sorted(missing))} (has "
            f"{', '.join(map(str, descriptions.columns))}); read files with harness.evaluate.read_descriptions"
        )
    table = descriptions[["feature", "description"]].copy()
    features = pd.to_numeric(table["feature"], errors="coerce")
    bad = table["feature"][features.isna() | (features < 0) | (features % 1 != 0)]
    if not bad.empty:
        raise EvaluationError(
            f"descriptions table: feature values {bad.head(5).tolist()} are not non-negative integers"
        )
    table["feature"] = features.astype("int64")
    duplicated = table["feature"][table["feature"].duplicated()].unique()
    if duplicated.size:
        raise EvaluationError(
            f"descriptions table: features {duplicated[:10].tolist()} appear more than once; keep one row each"
        )
    texts = table["description"].dropna()
    not_text = texts[~texts.map(lambda value: isinstance(value, str) and bool(value.strip()))]
    if not not_text.empty:
        raise EvaluationError(
            f"descriptions table: descriptions {not_text.head(5).tolist()!r} are not non-empty texts"
        )
    return table


def _base_key(
    config: HarnessConfig, loaded_model: LoadedModel, site: FeatureSite, corpus: pd.DataFrame
) -> dict[str, Any]:
    """What, besides the feature and its description, determines a feature's FADE result."""
    fade = config.fade.model_dump(mode="json")
    for role in ("rater", "generator"):
        if fade[role] is not None:
            fade[role] = {key: value for key, value in fade[role].items() if key not in _OPERATIONAL_RATER_SETTINGS}
    return {
        "format": 1,
        "fade": fade,
        "model": loaded_model.identity,
        "site": site.identity,
        "corpus": corpus_fingerprint(corpus),
        "activations": {name: getattr(config.activations, name) for name in _ACTIVATION_RESULT_SETTINGS},
    }


async def _evaluate_all(
    run: _Run,
    store: ResultStore,
    work: Sequence[tuple[int, str, str]],
    results: dict[int, FeatureResult],
    progress: bool,
    on_feature_done: Callable[[FeatureResult], None] | None,
) -> None:
    # As many features in flight as the rater has call slots: enough to keep them busy while a feature
    # waits for the subject model, few enough that finished features are stored all along the run.
    in_flight = asyncio.Semaphore(run.config.fade.rater.concurrency)
    with tqdm(total=len(work), desc="FADE", unit="feature", disable=not progress, dynamic_ncols=True) as bar:

        async def one(feature: int, description: str, key: str) -> None:
            async with in_flight:
                outcome = await _evaluate_feature(run, feature, description, key)
                result = await run.on_io(_store_outcome, store, outcome, run)
            results[feature] = result
            bar.update(1)
            if on_feature_done is not None:
                on_feature_done(result)

        try:
            async with asyncio.TaskGroup() as group:
                for feature, description, key in work:
                    group.create_task(one(feature, description, key))
        except BaseExceptionGroup as failures:
            # The first failure stopped the run (the other features were cancelled); raise it as itself.
            raise failures.exceptions[0] from None


async def _evaluate_feature(run: _Run, feature: int, description: str, key: str) -> _FeatureOutcome:
    config = run.config
    fade = config.fade
    # Deviation from the FADE reference: one global stream, seeded once, runs through all features in
    # turn; ours is per feature, from (seed, feature), so a result does not depend on which other features
    # are evaluated, in what order or after an interruption.
    rng = np.random.default_rng([fade.seed, feature])
    calls = FeatureCalls(run.backend, feature)
    natural = run.activations.column(feature)

    async def activations_of(texts: list[str]) -> np.ndarray:
        values = await run.on_model(
            activations_for_texts, run.loaded_model, run.site, texts, [feature], config.activations
        )
        return values[:, 0]

    clarity, rated = await gather_or_cancel(
        score_clarity(calls.for_purpose("clarity"), description, natural, activations_of, fade),
        rate_natural_samples(calls.for_purpose("responsiveness"), description, natural, run.texts, run.sample_ids, fade, rng),
    )
    responsiveness = score_responsiveness(natural, rated)
    reference = run.activations.max_abs(feature) if run.site.steering_uses_reference else None
    gate = faithfulness_gate(clarity.score, responsiveness.gini, fade.gini_threshold)
    if not fade.faithfulness.enabled or gate is not None:
        faithfulness: FaithfulnessOutcome | Score = Score.undefined(gate or FAITHFULNESS_DISABLED)
        reference = None
    else:

        async def generate(positions: Sequence[int], factors: Sequence[float]) -> Continuations:
            return await run.on_model(
                generate_continuations,
                run.loaded_model,
                run.site,
                feature,
                reference,
                [run.texts[position] for position in positions],
                factors,
                generation_length=fade.faithfulness.generation_length,
                max_prompt_tokens=config.activations.max_length,
                batch_rows=fade.faithfulness.generation_batch_size,
            )

        faithfulness = await score_faithfulness(
            calls.for_purpose("faithfulness"), description, run.sample_ids, generate, fade.faithfulness, fade.rating_batch_size, rng
        )
    return _FeatureOutcome(feature, description, key, calls, clarity, rated, responsiveness, faithfulness, reference)


def _nullable_ratings(ratings: np.ndarray) -> pd.array:
    """Ratings as a nullable integer column: UNRATED becomes a missing value."""
    return pd.array([None if rating == UNRATED else rating for rating in ratings.tolist()], dtype="Int64")


def _store_outcome(store: ResultStore, outcome: _FeatureOutcome, run: _Run) -> FeatureResult:
    """The feature's result, tables and plots, written to the store (runs on the IO thread)."""
    natural = run.activations.column(outcome.feature)
    clarity, rated, faithfulness = outcome.clarity, outcome.rated, outcome.faithfulness
    counts = {
        "synthetic": len(clarity.synthetic_texts),
        "synthetic_answers": clarity.usable_answers,
        "natural": int(natural.size),
        **rating_counts(rated.ratings),
        "sparse_retry_samples": int(np.count_nonzero(rated.rounds > 0)),
    }
    tables = {
        "synthetic": pd.DataFrame({"text": clarity.synthetic_texts, "activation": clarity.synthetic_activations}),
        "natural_ratings": pd.DataFrame(
            {
                "sample_id": run.sample_ids[rated.positions],
                "text": [run.texts[position] for position in rated.positions.tolist()],
                "activation": natural[rated.positions],
                "rating": _nullable_ratings(rated.ratings),
                "round": rated.rounds,
            }
        ),
    }
    steered = faithfulness if isinstance(faithfulness, FaithfulnessOutcome) else None
    if steered is not None:
        counts["faithfulness_prompts"] = int(np.unique(steered.continuations.positions).size)
    scores = FeatureScores(
        clarity=clarity.score,
        responsiveness=outcome.responsiveness.gini,
        purity=outcome.responsiveness.average_precision,
        faithfulness=steered.result.score if steered is not None else faithfulness,
        faithfulness_factor=steered.result.factor if steered is not None else None,
        counts=counts,
    )
    figures = {
        "clarity": plots.clarity_plot(clarity.synthetic_activations, natural, scores),
        "ratings": plots.rating_plot(natural[rated.positions[rated.rated]], rated.ratings[rated.rated], scores),
        "radar": plots.radar_plot(scores, f"feature {outcome.feature}: {outcome.description[:60]}"),
    }
    steering: dict[str, Any] = {}
    if steered is not None:
        continuations = steered.continuations
        tables["continuations"] = pd.DataFrame(
            {
                "factor": continuations.factors,
                "sample_id": run.sample_ids[continuations.positions],
                "prompt": [run.texts[position] for position in continuations.positions.tolist()],
                "continuation": continuations.texts,
                "rating": _nullable_ratings(continuations.ratings),
                "round": continuations.rounds,
            }
        )
        figures["faithfulness"] = plots.faithfulness_plot(continuations.rating_shares(), scores)
        steering = {
            "p2_by_factor": {factor_label(factor): share for factor, share in steered.p2_by_factor.items()},
            "factor_counts": {
                factor_label(factor): rating_counts(ratings) for factor, ratings in continuations.by_factor().items()
            },
            "generate_calls": steered.generate_calls,
        }
    result = FeatureResult(
        feature=outcome.feature,
        description=outcome.description,
        key=outcome.key,
        scores=scores,
        steering_reference=outcome.steering_reference,
        llm_requests=outcome.calls.requests,
        llm_failures=outcome.calls.failures,
        **steering,
    )
    return store.save(result, tables, figures)
