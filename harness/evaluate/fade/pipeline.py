"""FADE over a table of descriptions: one activation pass for every feature, LLM work concurrent across
features, results persisted per feature so an interrupted run resumes.

Per feature (its own random stream from (fade.seed, feature)):
  Clarity        generation calls -> synthetic samples -> their activations -> Gini vs natural samples
  Responsiveness natural samples chosen by activation -> ratings (+ retries) -> Gini / Purity = AP
  Faithfulness   only when Clarity and Responsiveness pass gini_threshold: steered generation on natural
                 prompts (drawn once, the same for every feature) for every factor -> ratings of the
                 continuations -> p2 -> faithfulness
Clarity and Responsiveness run side by side; subject-model work (forward passes, generate) runs on one
worker thread, one job at a time, so one feature's steering hook never meets another's pass. The steered
generation of all features goes through one ContinuationEngine, which computes their shared work once.
Under `accelerate launch` each process evaluates its share of the features.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from harness.activations import (
    ActivationSet,
    Processes,
    activations_for_texts,
    calibration_corpus,
    current_processes,
    extract_activations,
)
from harness.config import ACTIVATION_VALUE_SETTINGS, FadeConfig, HarnessConfig, identity_payload
from harness.corpus import corpus_fingerprint, load_corpus
from harness.errors import ConfigError, EvaluationError, LLMError
from harness.evaluate.fade import _plots as plots
from harness.evaluate.fade._calls import FeatureCalls, RaterBackend
from harness.evaluate.fade._clarity import ClarityOutcome, generate_synthetic_texts, score_clarity
from harness.evaluate.fade._clarity_floor import ClarityFloor, clarity_floor
from harness.evaluate.fade._metrics import GiniAP, faithfulness_gate
from harness.evaluate.fade._responsiveness import RatedNaturalSamples, rate_natural_samples, score_responsiveness
from harness.evaluate.fade.continuations import ContinuationEngine
from harness.evaluate.fade.faithfulness import FaithfulnessOutcome, faithfulness_prompts, score_faithfulness
from harness.evaluate.fade.rating import UNRATED, rating_counts
from harness.evaluate.fade.results import FeatureResult, ResultStore, factor_label
from harness.evaluate.scores import FeatureScores, Score
from harness.files import identity_hash
from harness.llm import LLMClient, Usage, UsageLedger
from harness.llm.per_loop import gather_or_cancel, run_to_end
from harness.llm.tracing import CallTracer
from harness.model import LoadedModel, load_subject_model
from harness.raters import Capability, Rater, build_rater
from harness.score_names import Reason
from harness.secrets import redact_text
from harness.sites import FeatureSite, build_site

T = TypeVar("T")


@dataclass
class EvaluationResult:
    """The FADE results of every described feature of one evaluation.

    `computed` were evaluated by this call, `reused` read from an earlier (interrupted) run in the same
    output folder; `skipped` are features whose row had no description, with the reason; `failed` are the
    features some of whose LLM calls failed for good (their scores say Reason.LLM_FAILED; the next call
    computes them again).
    """

    output_dir: Path
    results: dict[int, FeatureResult]
    scores: pd.DataFrame
    summary: dict[str, Any]
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    llm_usage: Usage = field(default_factory=Usage)
    # What this call's clarity floor took (`requests`, `seconds`); empty when it was off or had nothing to do.
    floor_cost: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[int]:
        return [feature for feature, result in self.results.items() if result.failed]


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
    # feature -> unrelated concept -> its activations on that concept's synthetic samples (clarity floor)
    unrelated: dict[int, dict[str, np.ndarray]] | None = None
    plotted: frozenset[int] = frozenset()  # the features whose plots are drawn (`_plotted_features`)
    continuations: ContinuationEngine = field(init=False)
    prompt_rounds: list[np.ndarray] = field(init=False)  # faithfulness prompts, the same for every feature

    def __post_init__(self) -> None:
        faithfulness = self.config.fade.faithfulness
        engine = ContinuationEngine(
            self.loaded_model,
            self.site,
            self.texts,
            self.on_model,
            generation_length=faithfulness.generation_length,
            max_prompt_tokens=self.config.activations.max_length,
            batch_rows=faithfulness.generation_batch_size,
        )
        object.__setattr__(self, "continuations", engine)
        prompts = faithfulness_prompts(len(self.texts), faithfulness, self.config.fade.seed)
        object.__setattr__(self, "prompt_rounds", prompts)

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
    floor: ClarityFloor | None = None


def evaluate_descriptions(
    config: HarnessConfig,
    descriptions: pd.DataFrame,
    output_dir: str | Path,
    progress: bool = True,
    *,
    on_feature_done: Callable[[FeatureResult], None] | None = None,
    usage_ledger: UsageLedger | None = None,
    call_tracer: CallTracer | None = None,
    corpus: pd.DataFrame | None = None,
    site: FeatureSite | None = None,
) -> EvaluationResult:
    """Score every (feature, description) row with FADE on the config's site, corpus and rater.

    Features whose result is already in `output_dir` (same description and settings) are not
    computed again; the results are the same as an uninterrupted run's. Undefined scores (no rated-2
    samples, no synthetic samples, faithfulness not computed, ...) are null with a reason; the run goes on.
    A score whose LLM calls failed for good is null with Reason.LLM_FAILED, never a data reason; such a
    feature is listed in `failed` and is not reused by the next call (it is computed again).

    Args:
        config: the whole config; uses model, corpus, site, activations and fade.
        descriptions: a table with `feature` and `description` columns (e.g. from `read_descriptions`
            or an explainer); rows without a description are skipped.
        output_dir: where per-feature results, tables and plots, scores.csv and summary.json go.
        progress: show progress bars.
        on_feature_done: called with each feature's result right after it is stored.
        usage_ledger: where the LLM clients also append every count (a tracked run sums it over processes).
        call_tracer: records every LLM call as an MLflow trace of the tracked run (harness.llm.tracing).
        corpus, site: the config's corpus and site when the caller has them (the stages share theirs: a random
            SAE is then calibrated once); made from the config otherwise.

    Raises:
        EvaluationError: the table lacks the columns or has duplicate / invalid features.
        SiteError: a feature is out of range for the site.
        LLMError: the rater backend fails before answering any call (key, model or address wrong).
        ConfigError: no fade.generator, and the rater answers no prompts (it cannot write Clarity's samples).
    """
    table = _checked_descriptions(descriptions)
    described = {int(row.feature): row.description for row in table.itertuples() if isinstance(row.description, str)}
    skipped = {int(feature): Reason.NO_DESCRIPTION for feature in table["feature"] if feature not in described}
    store = ResultStore(output_dir)
    loaded_model = load_subject_model(config.model)
    if corpus is None:
        corpus = load_corpus(config.corpus, loaded_model.tokenizer)
    if site is None:
        calibration = (  # a random SAE is calibrated on the corpus: the same SAE as the activation stage's
            calibration_corpus(loaded_model, corpus, config.activations, progress=progress)
            if config.site.reads_corpus
            else None
        )
        site = build_site(config.site, loaded_model, calibration)
    features = np.fromiter(described, dtype=np.int64, count=len(described))
    site.resolve_features(features)
    base_key = _base_key(config, loaded_model, site, corpus)
    keys = {
        feature: identity_hash({**base_key, "feature": feature, "description": text})
        for feature, text in described.items()
    }
    processes = current_processes()
    results = {feature: result for feature, key in keys.items() if (result := store.load(feature, key)) is not None}
    # Under `accelerate launch` every process works from the main one's view of what is left (another
    # process may already have stored a feature when this one looks), and evaluates its share of it.
    pending = processes.gather([feature for feature in keys if feature not in results])[0]
    mine = processes.split(np.asarray(pending, dtype=np.int64)).tolist() if pending else []
    usage = Usage()
    floor_cost: dict[str, float] = {}
    failure: BaseException | None = None
    if pending:
        # One pass over the site's configured features when they cover the described ones (the explain
        # stage's pass, cached), else over every described feature, finished ones too: either way the same
        # numbers whichever features are left to compute, in chunks or after an interruption.
        selection = site.resolve_features(site.selection)
        extracted = selection if np.isin(features, selection).all() else np.unique(features)
        activations = extract_activations(
            loaded_model, site, corpus, config.activations, features=extracted, progress=progress
        )
        progress = progress and processes.is_main
        rater = build_rater(
            config.fade,
            config.activations.cache_dir,
            corpus["text"].tolist(),
            progress=False,
            ledger=usage_ledger,
            tracer=call_tracer,
        )
        generator = clarity_writer(config.fade, rater, config.activations.cache_dir)
        own_generator = config.fade.generator is not None  # else the rater's own client writes
        generator.ledger = usage_ledger
        generator.tracer = call_tracer
        backend = RaterBackend(generator, rater)
        work = [(feature, described[feature], keys[feature]) for feature in mine]
        with (
            ThreadPoolExecutor(1, thread_name_prefix="fade-model") as model_thread,
            ThreadPoolExecutor(1, thread_name_prefix="fade-io") as io_thread,
        ):
            try:
                unrelated = None
                if config.fade.clarity_floor.enabled and mine:
                    started = time.perf_counter()
                    unrelated, floor_requests = _unrelated_activations(config, loaded_model, site, backend, mine)
                    floor_cost = {"requests": floor_requests, "seconds": time.perf_counter() - started}
                run = _Run(
                    config=config,
                    loaded_model=loaded_model,
                    site=site,
                    texts=corpus.set_index("sample_id").loc[activations.sample_ids, "text"].tolist(),
                    sample_ids=activations.sample_ids,
                    activations=activations,
                    backend=backend,
                    model_thread=model_thread,
                    io_thread=io_thread,
                    unrelated=unrelated,
                    plotted=_plotted_features(table, config),
                )
                run_to_end(_evaluate_all(run, store, work, results, progress, on_feature_done))
            except Exception as error:
                if processes.num_processes == 1:
                    raise
                failure = error  # told to the other processes first, so none waits for this one forever
            finally:
                usage = generator.usage + rater.usage if own_generator else rater.usage
                if own_generator:
                    generator.close()
                rater.close()
    if processes.num_processes > 1 and pending:
        _gather_shares(processes, failure, store, keys, results)
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
        floor_cost=floor_cost,
    )


def clarity_writer(fade: FadeConfig, rater: Rater, cache_dir: str | Path) -> LLMClient:
    """The LLM that writes Clarity's synthetic samples: `fade.generator`, else the rater's own chat client.

    Raises:
        ConfigError: no fade.generator, and the rater answers no prompts (the config refuses the embedding
            rater there; this refuses any other such rater).
    """
    if fade.generator is not None:
        return LLMClient(fade.generator, cache_dir, progress=False)
    if not rater.supports(Capability.PROMPTS):
        raise ConfigError(
            f"fade.rater {rater.label!r} writes no text; set fade.generator to an LLM (e.g. "
            "{model: local/smollm2-135m}) for Clarity's synthetic samples"
        )
    return rater.chat


def _unrelated_activations(
    config: HarnessConfig, loaded_model: LoadedModel, site: FeatureSite, backend: RaterBackend, features: list[int]
) -> tuple[dict[int, dict[str, np.ndarray]], int]:
    """Each feature's activations on the synthetic samples of every clarity-floor concept, and the LLM
    requests made: the samples are written once (the LLM cache keeps them for every variant), and read on
    all features in one pass."""
    concepts = config.fade.clarity_floor.concepts
    calls = FeatureCalls(backend, purpose="clarity_floor")

    async def write_all() -> list[tuple[list[str], int]]:
        return await gather_or_cancel(*(generate_synthetic_texts(calls, concept, config.fade) for concept in concepts))

    samples = [texts for texts, _ in run_to_end(write_all())]
    if calls.failures:  # the floor of every feature would rest on the samples that did come
        raise LLMError(
            f"{calls.failures} LLM calls writing the clarity floor's samples failed (the first: "
            f"{calls.first_error}); the answers that came are cached: run the same command again when the "
            "backend is back, or turn fade.clarity_floor off"
        )
    texts = [text for concept_texts in samples for text in concept_texts]
    values = (
        activations_for_texts(loaded_model, site, texts, features, config.activations)
        if texts
        else np.zeros((0, len(features)), dtype=np.float32)
    )
    bounds = np.cumsum([0, *(len(concept_texts) for concept_texts in samples)])
    by_feature = {
        feature: {concept: values[bounds[i] : bounds[i + 1], column] for i, concept in enumerate(concepts)}
        for column, feature in enumerate(features)
    }
    return by_feature, calls.requests


def _gather_shares(
    processes: Processes,
    failure: BaseException | None,
    store: ResultStore,
    keys: dict[int, str],
    results: dict[int, FeatureResult],
) -> None:
    """After every process's share: raise this process's failure or another's, else read the others'
    features from the shared output folder into `results`."""
    failures = processes.gather(None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    other = next((f"process {index}: {text}" for index, text in enumerate(failures) if text), None)
    if other is not None:
        raise EvaluationError(
            f"another process of this evaluation failed ({other}); the features finished are stored, "
            "so running the same command again resumes"
        )
    for feature, key in keys.items():
        if feature not in results:
            loaded = store.load(feature, key)
            if loaded is None:
                raise EvaluationError(f"feature {feature} was assigned to another process but is not in {store.root}")
            results[feature] = loaded


def _checked_descriptions(descriptions: pd.DataFrame) -> pd.DataFrame:
    missing = {"feature", "description"} - set(descriptions.columns)
    if missing:
        raise EvaluationError(
            f"the descriptions table lacks the column(s) {', '.join(sorted(missing))} (has "
            f"{', '.join(map(str, descriptions.columns))}); read files with harness.evaluate.read_descriptions"
        )
    table = descriptions[["feature", "description"]].copy()
    features = pd.to_numeric(table["feature"], errors="coerce")
    bad = table["feature"][features.isna() | (features < 0) | (features % 1 != 0) | (features >= 2**63)]
    if not bad.empty:
        raise EvaluationError(
            f"descriptions table: feature values {bad.head(5).tolist()} are not non-negative integers (int64)"
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
        raise EvaluationError(f"descriptions table: descriptions {not_text.head(5).tolist()!r} are not non-empty texts")
    return table


def _plotted_features(table: pd.DataFrame, config: HarnessConfig) -> frozenset[int]:
    """The first `tracking.plot_features` features of the table, the ones a tracked run logs plots of: drawing
    a feature's four plots costs about as much CPU as the rest of its FADE work (0.3-0.7 s), on 1,000 features
    most of FADE's time, for plots nobody sees."""
    return frozenset(table["feature"].head(config.tracking.plot_features).tolist())


def _base_key(
    config: HarnessConfig, loaded_model: LoadedModel, site: FeatureSite, corpus: pd.DataFrame
) -> dict[str, Any]:
    """What, besides the feature and its description, determines a feature's FADE result (its store key)."""
    return {
        "format": 2,  # 2: faithfulness prompts shared by every feature (deviation E11)
        "fade": identity_payload(config.fade, held=False),  # these keys never held the rater's api_base
        "model": loaded_model.identity,
        "site": site.identity,
        "corpus": corpus_fingerprint(corpus),
        "activations": identity_payload(config.activations, only=ACTIVATION_VALUE_SETTINGS),
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
    tracer = run.backend.generator.tracer  # the rater's too, when it is an LLM
    with tqdm(total=len(work), desc="FADE", unit="feature", disable=not progress, dynamic_ncols=True) as bar:

        async def one(feature: int, description: str, key: str) -> None:
            async with in_flight:
                with tracer.feature(feature) if tracer is not None else nullcontext():  # its calls: one trace
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
        rate_natural_samples(
            calls.for_purpose("responsiveness"), description, natural, run.texts, run.sample_ids, fade, rng
        ),
    )
    responsiveness = score_responsiveness(natural, rated)
    reference = run.activations.max_abs(feature) if run.site.steering_uses_reference else None
    gate = faithfulness_gate(clarity.score, responsiveness.gini, fade.gini_threshold)
    if calls.failures and (fade.faithfulness.enabled or gate is not None):
        # A gate judged on scores whose calls failed says nothing: faithfulness is failed, not "below the gate".
        faithfulness: FaithfulnessOutcome | Score = Score.undefined(Reason.LLM_FAILED)
        reference = None
    elif not fade.faithfulness.enabled or gate is not None:
        faithfulness = Score.undefined(gate or Reason.FAITHFULNESS_DISABLED)
        reference = None
    else:
        faithfulness = await score_faithfulness(
            calls.for_purpose("faithfulness"),
            description,
            run.sample_ids,
            partial(run.continuations.continuations, feature, reference),
            fade.faithfulness,
            fade.rating_batch_size,
            run.prompt_rounds,
        )
    floor = None
    if run.unrelated is not None:
        own = Score.undefined(Reason.LLM_FAILED) if "clarity" in calls.failed_purposes else clarity.score
        floor = clarity_floor(own, natural, run.unrelated[feature], fade.clarity_floor.beats_at_z)
    return _FeatureOutcome(
        feature, description, key, calls, clarity, rated, responsiveness, faithfulness, reference, floor
    )


# Which scores each purpose's calls feed (FeatureCalls.for_purpose).
_SCORES_OF_PURPOSE = {
    "clarity": ("clarity",),
    "responsiveness": ("responsiveness", "purity"),
    "faithfulness": ("faithfulness",),
}
MAX_ERROR_LENGTH = 500  # of FeatureResult.llm_error


def _without_failed(scores: FeatureScores, failed_purposes: set[str | None]) -> FeatureScores:
    """The scores with each one whose LLM calls failed made undefined (Reason.LLM_FAILED): what the answers
    that did come say is no result about the feature (deviation from the FADE reference, which counts a
    failed call as an unparsable answer)."""
    failed = {name for purpose in failed_purposes for name in _SCORES_OF_PURPOSE.get(purpose or "", ())}
    if not failed:
        return scores
    update: dict[str, Any] = {name: Score.undefined(Reason.LLM_FAILED) for name in failed}
    if "faithfulness" in failed:
        update["faithfulness_factor"] = None
    return scores.model_copy(update=update)


def _error_text(error: str | None) -> str | None:
    return None if error is None else redact_text(error)[:MAX_ERROR_LENGTH]


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
    scores = _without_failed(
        FeatureScores(
            clarity=clarity.score,
            responsiveness=outcome.responsiveness.gini,
            purity=outcome.responsiveness.average_precision,
            faithfulness=steered.result.score if steered is not None else faithfulness,
            faithfulness_factor=steered.result.factor if steered is not None else None,
            counts=counts,
        ),
        outcome.calls.failed_purposes,
    )
    plotted = outcome.feature in run.plotted
    figures = (
        {
            "clarity": plots.clarity_plot(clarity.synthetic_activations, natural, scores),
            "ratings": plots.rating_plot(natural[rated.positions[rated.rated]], rated.ratings[rated.rated], scores),
            "radar": plots.radar_plot(scores, f"feature {outcome.feature}: {outcome.description[:60]}"),
        }
        if plotted
        else {}
    )
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
        if plotted:
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
        clarity_floor=outcome.floor,
        scores=scores,
        steering_reference=outcome.steering_reference,
        llm_requests=outcome.calls.requests,
        llm_failures=outcome.calls.failures,
        llm_error=_error_text(outcome.calls.first_error),
        **steering,
    )
    return store.save(result, tables, figures)
