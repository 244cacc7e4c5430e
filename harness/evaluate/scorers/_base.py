"""What every scorer is: a registered class turning feature records and descriptions into one row per feature.

A scorer's table has `feature`, `<name>` (the main value, a float or None), `<name>_reason` (why it is
None) and extra columns `<name>_<metric>`. A scorer works in two steps: `prepare` looks at one feature
(what to show, or why it cannot be scored), `evaluate` scores every prepared feature at once (one LLM
batch, one encoder pass). `run_scorers` runs the enabled scorers and merges their tables. A scorer that
reads no description (`needs_description` False: the intruder scorer) scores undescribed features too.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel

from harness.config import LLMScorerConfig, ScorersConfig, plugin_settings
from harness.errors import ConfigError, EvaluationError, LLMError
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.raters import Capability, as_rater
from harness.registry import SCORERS
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.llm import AnswerFormat, Completion, LLMClient
    from harness.raters import Rater

Messages = list[dict[str, str]]
ScoreKind = Literal["input", "output", "feature"]
ScoreSide = Literal["input", "output"]
# Examples a scorer reads that come from their own pass over the corpus (harness.stages.SharedStages).
CorpusExamples = Literal["delphi_windows", "saebench"]
# The features whose rater calls failed for good while a scorer evaluates (Scorer.score sets it; ask_rater adds).
_FAILED_FEATURES: ContextVar[set[int] | None] = ContextVar("failed_features", default=None)


@dataclass(frozen=True)
class SubjectSite:
    """The subject model and its feature site, for scorers that run the model (`Scorer.needs_model`)."""

    model: Any  # a harness LoadedModel
    site: Any  # a harness.sites.FeatureSite


@dataclass(frozen=True)
class FeatureScore:
    """One feature's main score and its extra metrics (None where undefined)."""

    feature: int
    score: Score
    extras: Mapping[str, float | int | None] = field(default_factory=dict)


class Scorer(ABC):
    """A scoring method. `extra_columns` are the metric names of its `<name>_<metric>` columns.

    What the pipeline, tracking and the leaderboard need to know about a scorer are class attributes (its
    needs and its score's kind), read from the class, never decided by its name; the run's score manifest
    (harness.track.manifest) records them.
    """

    needs_llm: ClassVar[bool]
    # True: the method runs the subject model at the feature site (output-centric scorers); the scorers stage
    # hands it over as `subject` before scoring.
    needs_model: ClassVar[bool] = False
    subject: SubjectSite | None = None
    # What else a rater that reads no prompt (the embedding rater) must support to score this method; None: no
    # such rater can. Without it the score is undefined with `unjudged_without_prompts`.
    without_prompts: ClassVar[Capability | None] = None
    # Why a rater that reads no prompt cannot score this method.
    unjudged_without_prompts: ClassVar[Reason] = Reason.RATER_READS_NO_PROMPT
    # False: the method shows the rater no description, so a missing one does not make the score undefined.
    needs_description: ClassVar[bool] = True
    extra_columns: ClassVar[tuple[str, ...]] = ()
    # What the score says: whether a description predicts the feature's activations on inputs ("input"), the
    # model's outputs when the feature is steered ("output"), or something of the feature alone that reads no
    # description ("feature": needs_description is False).
    kind: ClassVar[ScoreKind] = "input"
    # Which side of the feature the score reads: where it fires ("input") or what it does to the output
    # ("output"); for a description-free ("feature") score too, so the two sides can be set side by side.
    side: ClassVar[ScoreSide] = "input"
    # Whose method the score follows when it is another project's, in words ("SAEBench's ..."); None: ours.
    convention: ClassVar[str | None] = None
    # A plugin's settings (`scorers.settings.<name>` in the config), validated at load; None: the scorer reads
    # its own section of `scorers` (the harness's scorers).
    settings_model: ClassVar[type[BaseModel] | None] = None

    def corpus_examples(self, config: ScorersConfig) -> frozenset[CorpusExamples]:
        """Which examples drawn over the whole corpus the scorers stage must put on the records for this scorer
        under `config` (delphi's test windows, SAEBench's examples); none by default."""
        return frozenset()

    @property
    def name(self) -> str:
        """The scorer's registered name (harness.registry.SCORERS), also its config section and column."""
        return SCORERS.name_of(type(self))

    @abstractmethod
    def prepare(self, record: FeatureRecord, description: str, settings: Any) -> Any:
        """What to score for one described feature, or the Reason it cannot be scored."""

    @abstractmethod
    def evaluate(
        self, prepared: Mapping[int, Any], client: Rater | None, settings: Any, *, progress: bool
    ) -> dict[int, FeatureScore]:
        """The scores of every prepared feature (feature -> what `prepare` returned), in one go."""

    def score(
        self,
        records: Sequence[FeatureRecord],
        descriptions: Mapping[int, str | None],
        client: Rater | LLMClient | None,
        config: ScorersConfig,
        *,
        progress: bool = True,
    ) -> pd.DataFrame:
        """One row per described feature (see the module docstring for the columns).

        Args:
            records: the features' examples (top examples and the activation pool).
            descriptions: feature -> description; features missing here are not scored, a None or empty
                description gives an undefined score (reason no_description) unless the scorer reads none.
            client: the rater (fade.rater; an LLM client is taken as an LLM rater); None for scorers that
                need no LLM.
            config: the scorers section.
            progress: show progress bars (an LLM scorer's bar is its client's, set when the client is made).
        """
        settings = self.settings(config)
        rater = None if client is None else as_rater(client)
        if self.needs_llm and rater is not None and not self.can_be_judged_by(rater):
            return self.frame(
                [
                    FeatureScore(record.feature, Score.undefined(self.unjudged_without_prompts))
                    for record, _ in described_records(records, descriptions)
                ]
            )
        rows: dict[int, FeatureScore] = {}
        prepared: dict[int, Any] = {}
        order = []
        for record, description in described_records(records, descriptions):
            order.append(record.feature)
            if description is None and self.needs_description:
                work: Any = Reason.NO_DESCRIPTION
            else:
                work = self.prepare(record, description or "", settings)
            if isinstance(work, Reason):
                rows[record.feature] = FeatureScore(record.feature, Score.undefined(work))
            else:
                prepared[record.feature] = work
        if prepared:
            if self.needs_llm and client is None:
                raise ConfigError(f"the {self.name!r} scorer needs an LLM client; make one from fade.rater")
            if self.needs_model and self.subject is None:
                raise ConfigError(
                    f"the {self.name!r} scorer runs the subject model; pass run_scorers(..., subject=SubjectSite("
                    "model, site)) as the scorers stage does"
                )
            failed: set[int] = set()
            token = _FAILED_FEATURES.set(failed)
            try:
                rows.update(self.evaluate(prepared, rater, settings, progress=progress))
            finally:
                _FAILED_FEATURES.reset(token)
            # What the answers that did come say is no result: the score failed (a rerun asks again).
            for feature in failed & rows.keys():
                rows[feature] = FeatureScore(feature, Score.undefined(Reason.LLM_FAILED), rows[feature].extras)
        return self.frame([rows[feature] for feature in order])

    def can_be_judged_by(self, rater: Rater) -> bool:
        """Whether `rater` can score this method: it answers prompts, or supports `without_prompts`."""
        return rater.supports(Capability.PROMPTS) or (
            self.without_prompts is not None and rater.supports(self.without_prompts)
        )

    def settings(self, config: ScorersConfig) -> Any:
        """The scorer's settings: its `settings_model` over `scorers.settings.<name>` (a plugin's), else its own
        section of the scorers config (named like the scorer)."""
        if self.settings_model is not None:
            return plugin_settings(type(self), config.settings.get(self.name, {}), f"scorers.settings.{self.name}")
        return getattr(config, self.name)

    def frame(self, rows: Sequence[FeatureScore]) -> pd.DataFrame:
        """The scorer's table from its rows, with every column present even when there are no rows."""
        extras = [f"{self.name}_{extra}" for extra in self.extra_columns]
        columns = ["feature", self.name, f"{self.name}_reason", *extras]
        data = [
            {
                "feature": row.feature,
                self.name: row.score.value,
                f"{self.name}_reason": row.score.reason,
                **{f"{self.name}_{extra}": row.extras.get(extra) for extra in self.extra_columns},
            }
            for row in rows
        ]
        return pd.DataFrame(data, columns=columns)


def clean_description(description: object) -> str | None:
    """The description as non-empty text, or None (missing, NaN from a table, blank)."""
    if description is None or (isinstance(description, float) and math.isnan(description)):
        return None
    text = str(description).strip()
    return text or None


def described_records(
    records: Sequence[FeatureRecord], descriptions: Mapping[int, object]
) -> list[tuple[FeatureRecord, str | None]]:
    """The records of the described features, in record order, each with its cleaned description.

    Raises:
        EvaluationError: a described feature has no record (the descriptions belong to another site).
    """
    known = {record.feature for record in records}
    unknown = sorted(int(feature) for feature in descriptions if int(feature) not in known)
    if unknown:
        raise EvaluationError(
            f"descriptions name features without activation records: {unknown[:10]}"
            f"{' ...' if len(unknown) > 10 else ''}; score descriptions of the site the records were extracted from"
        )
    wanted = {int(feature): clean_description(text) for feature, text in descriptions.items()}
    return [(record, wanted[record.feature]) for record in records if record.feature in wanted]


def logprob_params(client: LLMClient, settings: LLMScorerConfig) -> dict[str, Any]:
    """The request parameters asking for token log-probabilities, when the scorer's settings want them."""
    wanted = settings.logprobs == "on" or (settings.logprobs == "auto" and client.supports_logprobs)
    return {"logprobs": True, "top_logprobs": settings.top_logprobs} if wanted else {}


def ask_rater(
    rater: Rater,
    conversations: Sequence[Messages],
    validators: Sequence[Callable[[str], bool]],
    settings: LLMScorerConfig | None,
    desc: str,
    answer_formats: Sequence[AnswerFormat] | None = None,
    features: Sequence[int] | None = None,
) -> list[Completion | None]:
    """Every conversation in one concurrent batch to the rater's chat client (Capability.PROMPTS); a failed
    call is None in its place.

    Log-probabilities are asked for as `settings.logprobs` says (see logprob_params; never when `settings`
    is None). `answer_formats` (one per conversation) say what each answer should be: schemas for the
    backend, kinds for the counts.
    `features` (one per conversation) name the feature each call is about, for its trace.

    Raises:
        LLMError: not one call succeeded (a wrong key, model or address would otherwise make every
            score undefined without saying why).
    """
    if not conversations:
        return []
    client = rater.chat
    results = client.complete_many(
        conversations,
        desc=desc,
        validate=list(validators),
        answer_format=answer_formats,
        trace_context=None if features is None else [{"feature": int(feature)} for feature in features],
        **(logprob_params(client, settings) if settings is not None else {}),
    )
    failures = [result for result in results if isinstance(result, LLMError)]
    if len(failures) == len(results):
        raise LLMError(f"{desc}: none of the {len(results)} rater calls succeeded; the first failure: {failures[0]}")
    failed = _FAILED_FEATURES.get()
    if failed is not None and features is not None:
        failed.update(int(feature) for feature, result in zip(features, results) if isinstance(result, LLMError))
    return [None if isinstance(result, LLMError) else result for result in results]


def enabled_scorers(config: ScorersConfig) -> list[Scorer]:
    """The scorers `config.enabled` names, in its order; ConfigError for an unknown name."""
    try:
        return [SCORERS.get(name)() for name in config.enabled]
    except ConfigError as error:
        raise ConfigError(f"scorers.enabled: {error}") from None


def least_active_needed(config: ScorersConfig) -> int:
    """How many least-active samples per feature the activation pools should hold for the enabled scorers.

    Three times the most non-activating examples any enabled scorer shows, since the threshold drops the
    samples that are not near zero (dense neurons have few); 0 when no scorer is enabled. Pass it as
    `num_low` to harness.activations.pool_examples.
    """
    counts = [scorer.settings(config).num_non_activating for scorer in enabled_scorers(config)]
    return 3 * max(counts, default=0)


def run_scorers(
    records: Sequence[FeatureRecord],
    descriptions: Mapping[int, str | None],
    config: ScorersConfig,
    client: Rater | LLMClient | None,
    *,
    progress: bool = True,
    subject: SubjectSite | None = None,
) -> pd.DataFrame:
    """Every enabled scorer on the same descriptions, merged on `feature` (one row per described feature).

    Args:
        records: the features' examples (build_feature_records with the activation pools).
        descriptions: feature -> description.
        config: the scorers section; `enabled` names the scorers.
        client: the rater (fade.rater; an LLM client is taken as an LLM rater) when an enabled scorer needs one.
        progress: show progress bars.
        subject: the subject model and site, for the scorers that run the model (`needs_model`).

    Raises:
        ConfigError: an unknown scorer name, or an LLM scorer without a client.
    """
    scorers = enabled_scorers(config)
    needing_llm = [scorer.name for scorer in scorers if scorer.needs_llm]
    if needing_llm and client is None:
        raise ConfigError(f"scorers {needing_llm} need an LLM client; make one from fade.rater")
    table = pd.DataFrame({"feature": [record.feature for record, _ in described_records(records, descriptions)]})
    for scorer in scorers:
        if scorer.needs_model:
            scorer.subject = subject
        scores = scorer.score(records, descriptions, client, config, progress=progress)
        table = table.merge(scores, on="feature", how="left")
    return table
