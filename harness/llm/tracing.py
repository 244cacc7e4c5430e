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

At scale a run keeps a sample (tracking.trace_sample): every call of the first features it asks about and of
a fixed share of the others (by a hash of the feature id, so every variant keeps the same features); of the
other features only the calls that failed, were retried or answered invalidly. A call's span is therefore
made when the call ends, dated from its start, and only when it is kept. A long message (a FADE system
prompt) that a feature's trace already holds is stored once: later spans refer to the call that holds it.

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

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from harness.config import TraceSampleConfig
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
SAMPLED_TAG = "harness.sampled"  # "all": every call of the feature; "failures": only its failed or retried ones
CALL_ATTRIBUTE = "harness.call"  # a call's number in its feature's trace (what a repeated prompt refers to)
# A message this long that a trace already holds is not stored again: the span refers to the call that holds it.
LARGE_BODY_CHARS = 400
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


def in_share(feature: int, share: float) -> bool:
    """Whether a feature is in the traced share: a hash of its id (no process's hash seed), so every variant and
    run traces the same features."""
    digest = hashlib.sha256(f"feature {feature}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass
class _FeatureTrace:
    """One feature's calls in one stage: the trace's root span (opened when its first kept call ends, dated
    from its first call's start) and its tally."""

    holders: int = 0
    sampled: bool = True
    root: Any = None
    ended: bool = False
    first_start_ns: int | None = None
    bodies: dict[str, int] = field(default_factory=dict)  # a large message's digest -> the call that holds it
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
            SAMPLED_TAG: "all" if self.sampled else "failures",
        }

    def deduplicated(self, messages: Sequence[Any], call: int) -> list[Any]:
        """The messages with each large content that an earlier call of this trace holds replaced by a reference
        to that call (a FADE feature's ~70 calls share their ~1 kB system prompts)."""
        kept = []
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str) and len(content) >= LARGE_BODY_CHARS:
                digest = hashlib.sha256(content.encode()).hexdigest()[:16]
                holder = self.bodies.setdefault(digest, call)
                if holder != call:
                    reference = f"[the same {len(content)} characters as call {holder} of this trace (sha256 {digest})]"
                    message = {**message, "content": reference}
            kept.append(message)
        return kept


class _FeatureTraces:
    """The features held open, by (stage, feature); shared by a run's tracers of every stage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[tuple[str, int], _FeatureTrace] = {}
        self.sampled: dict[int, bool] = {}  # per feature, in every stage: are all its calls kept


@dataclass(frozen=True)
class CallTracer:
    """Where a client's calls go as traces: the run, its experiment, and the stage of the run.

    Args:
        run_id: the variant's MLflow run (trace metadata `mlflow.sourceRun`).
        experiment_id: the run's experiment (where the traces are stored).
        stage: the run's stage that makes these calls (explain, fade, scorers).
        sample: which features' calls are all kept (tracking.trace_sample); of the others only failed, retried
            or invalid calls are.
    """

    run_id: str
    experiment_id: str
    stage: str = ""
    sample: TraceSampleConfig = field(default_factory=TraceSampleConfig)
    _failed: list[bool] = field(default_factory=lambda: [False], compare=False, repr=False)
    _features: _FeatureTraces = field(default_factory=_FeatureTraces, compare=False, repr=False)

    def for_stage(self, name: str) -> CallTracer:
        """The same run, each trace tagged with stage `name`."""
        return replace(self, stage=name)

    def keeps_all_calls(self, feature: int | None) -> bool:
        """Whether every call about `feature` is kept (the first `sample.first_features` features the run asks
        about, and `sample.share` of the rest), or only its failed and retried ones; every call about no feature."""
        if feature is None:
            return True
        with self._features.lock:
            return self._sampled(int(feature))

    def _sampled(self, feature: int) -> bool:
        """keeps_all_calls, decided once per feature for every stage (call under the lock)."""
        decided = self._features.sampled
        if feature not in decided:
            decided[feature] = len(decided) < self.sample.first_features or in_share(feature, self.sample.share)
        return decided[feature]

    def hold(self, features: Iterable[int]) -> None:
        """Keep each feature's trace open (its calls one trace) until `release`d as often as held."""
        with self._features.lock:
            for feature in features:
                held = self._features.held.setdefault((self.stage, int(feature)), _FeatureTrace())
                held.holders += 1
                held.sampled = self._sampled(int(feature))

    def release(self, feature: int) -> None:
        """Let go of a held feature; its trace ends (and is written) when no one holds it any more."""
        with self._features.lock:
            key = (self.stage, int(feature))
            held = self._features.held[key]
            held.holders -= 1
            if held.holders:
                return
            del self._features.held[key]
            held.ended = True
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
        """The call's span to be: written when the call `finish`es (in its feature's trace when held), if its
        feature's calls are all kept or the call failed or was retried; None when MLflow failed (a call never
        fails for a trace)."""
        context = dict(context or {})
        feature = context.get("feature")
        try:
            with self._features.lock:
                held = self._features.held.get((self.stage, int(feature))) if feature is not None else None
                sampled = feature is None or self._sampled(int(feature))
                started_ns = time.time_ns()
                if held is not None and held.first_start_ns is None:
                    held.first_start_ns = started_ns
        except Exception as error:  # tracing is best effort: the call goes on without its trace
            self._warn_once(error)
            return None
        call = _Call(model, list(messages), dict(params), kind, context, tuple(secret for secret in secrets if secret))
        return CallSpan(self, call, sampled, held, started_ns, time.perf_counter())

    def _open(self, call: _Call, held: _FeatureTrace | None, started_ns: int) -> Any:
        """The call's MLflow span, opened now with its start time: a child of its feature's trace when that is
        still held, else a trace of its own."""
        import mlflow
        from mlflow.entities import SpanType

        secrets = call.secrets
        feature = call.context.get("feature")
        purpose = str(call.context.get("purpose") or "")
        kind = call.kind
        name = ".".join(part for part in (self.stage, purpose or kind or "call") if part)
        attributes = {f"harness.{key}": _clean(value, secrets) for key, value in call.context.items()}
        attributes |= {STAGE_TAG: self.stage, MODEL_TAG: call.model, KIND_TAG: kind or ""}
        params = _clean(call.params, secrets)
        with self._features.lock:
            if held is not None and not held.ended:
                if held.root is None:
                    tags = {STAGE_TAG: self.stage, FEATURE_TAG: str(feature)}
                    root_inputs = {"stage": self.stage, "feature": feature}
                    start = held.first_start_ns or started_ns
                    held.root = self._open_root(
                        f"{self.stage} feature {feature}", SpanType.CHAIN, tags, root_inputs, start
                    )
                held.calls += 1
                held.models.add(call.model)
                held.kinds.update([kind] if kind else [])
                held.purposes.update([purpose] if purpose else [])
                inputs = {"messages": _clean(held.deduplicated(call.messages, held.calls), secrets), "params": params}
                attributes[CALL_ATTRIBUTE] = held.calls
                return mlflow.start_span_no_context(
                    name,
                    span_type=SpanType.CHAT_MODEL,
                    parent_span=held.root,
                    inputs=inputs,
                    attributes=attributes,
                    start_time_ns=started_ns,
                )
        tags = {STAGE_TAG: self.stage, MODEL_TAG: call.model, CALLS_TAG: "1"}
        tags |= {KIND_TAG: kind} if kind else {}
        tags |= {FEATURE_TAG: str(feature)} if feature is not None else {}
        tags |= {PURPOSE_TAG: purpose} if purpose else {}
        tags |= {SAMPLED_TAG: "all" if self.keeps_all_calls(feature) else "failures"}
        inputs = {"messages": _clean(call.messages, secrets), "params": params}
        return self._open_root(name, SpanType.CHAT_MODEL, tags, inputs, started_ns, attributes)

    def _open_root(
        self,
        name: str,
        span_type: str,
        tags: Mapping[str, str],
        inputs: Any,
        started_ns: int,
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
            start_time_ns=started_ns,
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


@dataclass(frozen=True)
class _Call:
    """What a call's span records of its request, kept until the call ends (cleaned only if it is written)."""

    model: str
    messages: list[Any]
    params: dict[str, Any]
    kind: str | None
    context: dict[str, Any]
    secrets: tuple[str, ...]


@dataclass
class CallSpan:
    """One call in flight; `finish` writes its span (and, for a call of its own, its trace; a held feature's
    trace is tallied instead and ends when released) when the call is kept: its feature is sampled, or it
    failed, was retried or answered invalidly."""

    tracer: CallTracer
    call: _Call
    sampled: bool
    feature_trace: _FeatureTrace | None
    started_ns: int
    started: float

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

        status = "error" if error is not None else ("ok" if valid is not False else "invalid")
        if not (self.sampled or status != "ok" or attempts > 1):
            return
        latency = time.perf_counter() - self.started
        held = self.feature_trace
        secrets = self.call.secrets
        try:
            span = self.tracer._open(self.call, held, self.started_ns)
        except Exception as failure:  # tracing is best effort: the call's answer stands without its trace
            self.tracer._warn_once(failure)
            return
        try:
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
            if held is not None and span.parent_id is not None:
                with self.tracer._features.lock:
                    held.cache_hits += int(cached)
                    held.statuses.add(status)
            else:
                _set_trace_tags(
                    span, {CACHE_TAG: "hit" if cached else "miss", STATUS_TAG: status, CACHE_HITS_TAG: str(int(cached))}
                )
            if error is not None:
                span.set_outputs({"error": _clean(error, secrets)})
                span.end(status=SpanStatusCode.ERROR)
                return
            answer = _clean(text or "", secrets)
            span.set_outputs({"answer": answer, "json": _clean(answer_json(answer), secrets)})
            span.end(status=SpanStatusCode.OK)
        except Exception:  # best effort, as opening it
            logger.debug("failed to finish an LLM call's trace", exc_info=True)


def _set_trace_tags(span: Any, tags: Mapping[str, str]) -> None:
    """Tags of the (in-memory) trace, written with it when its root span ends."""
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    with InMemoryTraceManager.get_instance().get_trace(span.trace_id) as trace:
        if trace is not None:
            trace.info.tags.update(tags)
