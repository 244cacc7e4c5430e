"""Every LLM call of a tracked run as an MLflow span, one trace per (stage, feature), linked to the run.

A tracked run sets `LLMClient.tracer` (as it sets `ledger`); the client then opens one span per `acomplete`,
cached answers included, and closes it with what came back. While a stage holds a feature (`feature`, or
`hold`/`release` around a batch), that feature's calls are child spans of one trace, "<stage> feature <id>",
opened at its first call and ended when the last holder lets go: one trace to open for "what did the rater
see and answer for feature 5", and far fewer traces to write (MLflow's cost is per trace, ~0.1 s of CPU on
sqlite: benchmarks/README.md). A call about no held feature (the clarity floor's shared samples) is a trace
of its own. Spans are made with `mlflow.start_span_no_context` and carry their run and experiment
explicitly (trace metadata `mlflow.sourceRun`, the experiment id), so they do not depend on which thread or
event loop a call runs on, nor on MLflow's active run (a thread-local) or tracing context (contextvars).
MLflow writes traces on its own background threads (async trace logging, on by default); the run flushes
them before it ends.

What a call's span holds (docs/tracking.md): inputs = the messages and the request parameters (the
config's sampling settings, the JSON schema), outputs = the answer text and its JSON when it is JSON
(ratings, description, samples); attributes: stage, feature, purpose, prompt kind, model string, cache hit
or miss, attempts, tokens, cost, latency, whether the answer was valid. The trace's tags sum its calls up
(the purposes, kinds and models seen, comma-joined; cache "hit", "miss" or "mixed"; the worst status; the
number of calls and of cache hits). The API key is never
handed to the tracer; every string is passed through the redaction used everywhere (harness.secrets) and
has the key's value removed, in case a backend echoed it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from harness.secrets import REDACTED, redact, redact_text

logger = logging.getLogger(__name__)

# Trace tags (searchable: mlflow.search_traces(run_id=..., filter_string="tags.`harness.feature` = '5'")).
STAGE_TAG = "harness.stage"  # explain, fade, scorers
FEATURE_TAG = "harness.feature"  # the feature id the call is about
PURPOSE_TAG = "harness.purpose"  # which score asked: clarity, responsiveness, faithfulness, detection, ...
KIND_TAG = "harness.kind"  # the prompt kind (AnswerFormat.kind): fade_rating, fade_generation, explainer, ...
MODEL_TAG = "harness.model"  # the litellm model string
CACHE_TAG = (
    "harness.cache"  # "hit" (answered from the response cache, the backend not asked), "miss"; "mixed" (a trace)
)
STATUS_TAG = "harness.status"  # "ok", "invalid" (the validator rejected the last answer) or "error"
CALLS_TAG = "harness.calls"  # how many calls a trace holds
CACHE_HITS_TAG = "harness.cache_hits"  # how many of them the response cache answered
_STATUS_ORDER = ("ok", "invalid", "error")  # a trace's status is the worst of its calls'
SOURCE_RUN_METADATA = "mlflow.sourceRun"  # MLflow's own link from a trace to its run


def _clean(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON-safe copy with secret-named keys redacted, URLs cleaned and the secrets' values removed."""
    return _scrub(redact(value), [secret for secret in secrets if secret])


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {_scrub(str(key), secrets): _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item, secrets) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _scrub(redact_text(str(value)), secrets)


def answer_json(text: str) -> Any:
    """The answer's JSON value (a structured answer: ratings, description, samples), else None."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


@dataclass
class _FeatureTrace:
    """One feature's calls in one stage: the trace's root span (opened at the first call) and its tally."""

    holders: int = 0
    root: Any = None
    calls: int = 0
    cache_hits: int = 0
    statuses: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)

    def tags(self) -> dict[str, str]:
        """The trace's tags, summing up its calls."""
        cache = "hit" if self.cache_hits == self.calls else ("miss" if not self.cache_hits else "mixed")
        return {
            PURPOSE_TAG: ",".join(sorted(self.purposes)),
            KIND_TAG: ",".join(sorted(self.kinds)),
            MODEL_TAG: ",".join(sorted(self.models)),
            CACHE_TAG: cache,
            STATUS_TAG: max(self.statuses or {"ok"}, key=_STATUS_ORDER.index),
            CALLS_TAG: str(self.calls),
            CACHE_HITS_TAG: str(self.cache_hits),
        }


class _FeatureTraces:
    """The features held open, by (stage, feature); shared by a run's tracers of every stage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[tuple[str, int], _FeatureTrace] = {}


@dataclass(frozen=True)
class CallTracer:
    """Where a client's calls go as traces: the run, its experiment, and the stage of the run.

    Args:
        run_id: the variant's MLflow run (trace metadata `mlflow.sourceRun`).
        experiment_id: the run's experiment (where the traces are stored).
        stage: the run's stage that makes these calls (explain, fade, scorers).
    """

    run_id: str
    experiment_id: str
    stage: str = ""
    _failed: list[bool] = field(default_factory=lambda: [False], compare=False, repr=False)
    _features: _FeatureTraces = field(default_factory=_FeatureTraces, compare=False, repr=False)

    def for_stage(self, name: str) -> CallTracer:
        """The same run, each trace tagged with stage `name`."""
        return replace(self, stage=name)

    def hold(self, features: Iterable[int]) -> None:
        """Keep each feature's trace open (its calls one trace) until `release`d as often as held."""
        with self._features.lock:
            for feature in features:
                self._features.held.setdefault((self.stage, int(feature)), _FeatureTrace()).holders += 1

    def release(self, feature: int) -> None:
        """Let go of a held feature; its trace ends (and is written) when no one holds it any more."""
        with self._features.lock:
            key = (self.stage, int(feature))
            held = self._features.held[key]
            held.holders -= 1
            if held.holders:
                return
            del self._features.held[key]
        if held.root is not None:
            self._end_root(held)

    @contextmanager
    def feature(self, feature: int) -> Iterator[None]:
        """The feature's calls made inside the block are one trace."""
        self.hold([feature])
        try:
            yield
        finally:
            self.release(feature)

    def start(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        kind: str | None,
        context: Mapping[str, Any] | None,
        secrets: Sequence[str] = (),
    ) -> CallSpan | None:
        """Open the call's span (in its feature's trace when held); None when MLflow failed (a call never
        fails for a trace)."""
        import mlflow
        from mlflow.entities import SpanType

        context = dict(context or {})
        feature = context.get("feature")
        purpose = str(context.get("purpose") or "")
        name = ".".join(part for part in (self.stage, purpose or kind or "call") if part)
        attributes = {f"harness.{key}": _clean(value, secrets) for key, value in context.items()}
        attributes |= {STAGE_TAG: self.stage, MODEL_TAG: model, KIND_TAG: kind or ""}
        inputs = {"messages": _clean(list(messages), secrets), "params": _clean(dict(params), secrets)}
        secrets = tuple(secret for secret in secrets if secret)
        try:
            with self._features.lock:
                held = self._features.held.get((self.stage, int(feature))) if feature is not None else None
                if held is not None:
                    if held.root is None:
                        tags = {STAGE_TAG: self.stage, FEATURE_TAG: str(feature)}
                        root_inputs = {"stage": self.stage, "feature": feature}
                        held.root = self._open_root(
                            f"{self.stage} feature {feature}", SpanType.CHAIN, tags, root_inputs
                        )
                    held.calls += 1
                    held.models.add(model)
                    held.kinds.update([kind] if kind else [])
                    held.purposes.update([purpose] if purpose else [])
                    span = mlflow.start_span_no_context(
                        name, span_type=SpanType.CHAT_MODEL, parent_span=held.root, inputs=inputs, attributes=attributes
                    )
                    return CallSpan(span, secrets, time.perf_counter(), held, self._features.lock)
            tags = {STAGE_TAG: self.stage, MODEL_TAG: model, CALLS_TAG: "1"}
            tags |= {KIND_TAG: kind} if kind else {}
            tags |= {FEATURE_TAG: str(feature)} if feature is not None else {}
            tags |= {PURPOSE_TAG: purpose} if purpose else {}
            span = self._open_root(name, SpanType.CHAT_MODEL, tags, inputs, attributes)
        except Exception as error:  # tracing is best effort: the call goes on without its trace
            self._warn_once(error)
            return None
        return CallSpan(span, secrets, time.perf_counter())

    def _open_root(
        self,
        name: str,
        span_type: str,
        tags: Mapping[str, str],
        inputs: Any,
        attributes: Mapping[str, Any] | None = None,
    ) -> Any:
        import mlflow

        return mlflow.start_span_no_context(
            name,
            span_type=span_type,
            inputs=inputs,
            attributes=dict(attributes or {}),
            tags={key: redact_text(value) for key, value in tags.items()},
            metadata={SOURCE_RUN_METADATA: self.run_id},
            experiment_id=self.experiment_id,
        )

    def _end_root(self, held: _FeatureTrace) -> None:
        from mlflow.entities import SpanStatusCode

        try:
            tags = held.tags()
            _set_trace_tags(held.root, tags)
            held.root.set_outputs({"calls": held.calls, "cache_hits": held.cache_hits, "status": tags[STATUS_TAG]})
            held.root.end(status=SpanStatusCode.ERROR if "error" in held.statuses else SpanStatusCode.OK)
        except Exception:  # best effort, as start
            logger.debug("failed to end a feature's trace", exc_info=True)

    def _warn_once(self, error: BaseException) -> None:
        if not self._failed[0]:
            self._failed[0] = True
            logger.warning(
                "cannot record LLM calls as MLflow traces (%s); the run goes on without them", type(error).__name__
            )


@dataclass
class CallSpan:
    """One call's open span; `finish` records what came back and closes it (and, for a call of its own,
    its trace; a held feature's trace is tallied instead and ends when released)."""

    span: Any
    secrets: tuple[str, ...]
    started: float
    feature_trace: _FeatureTrace | None = None
    lock: Any = None

    def finish(
        self,
        *,
        text: str | None = None,
        cached: bool = False,
        valid: bool | None = None,
        parsed: bool | None = None,
        attempts: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        error: str | None = None,
    ) -> None:
        from mlflow.entities import SpanStatusCode
        from mlflow.tracing.constant import SpanAttributeKey

        try:
            status = "error" if error is not None else ("ok" if valid is not False else "invalid")
            latency = time.perf_counter() - self.started
            span = self.span
            span.set_attributes(
                {
                    CACHE_TAG: "hit" if cached else "miss",
                    STATUS_TAG: status,
                    "harness.attempts": attempts,
                    "harness.latency_s": round(latency, 6),
                    "harness.prompt_tokens": prompt_tokens,
                    "harness.completion_tokens": completion_tokens,
                    "harness.cost_usd": cost_usd,
                    **({"harness.valid": valid} if valid is not None else {}),
                    **({"harness.parsed": parsed} if parsed is not None else {}),
                }
            )
            span.set_attribute(
                SpanAttributeKey.CHAT_USAGE,
                {
                    "input_tokens": prompt_tokens,
                    "output_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            )
            if self.feature_trace is not None:
                with self.lock:
                    self.feature_trace.cache_hits += int(cached)
                    self.feature_trace.statuses.add(status)
            else:
                _set_trace_tags(
                    span, {CACHE_TAG: "hit" if cached else "miss", STATUS_TAG: status, CACHE_HITS_TAG: str(int(cached))}
                )
            if error is not None:
                span.set_outputs({"error": _clean(error, self.secrets)})
                span.end(status=SpanStatusCode.ERROR)
                return
            answer = _clean(text or "", self.secrets)
            span.set_outputs({"answer": answer, "json": _clean(answer_json(answer), self.secrets)})
            span.end(status=SpanStatusCode.OK)
        except Exception:  # best effort, as start
            logger.debug("failed to finish an LLM call's trace", exc_info=True)


def _set_trace_tags(span: Any, tags: Mapping[str, str]) -> None:
    """Tags of the (in-memory) trace, written with it when its root span ends."""
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    with InMemoryTraceManager.get_instance().get_trace(span.trace_id) as trace:
        if trace is not None:
            trace.info.tags.update(tags)
