"""Every LLM call of a tracked run as one MLflow trace, linked to the variant's run.

A tracked run sets `LLMClient.tracer` (as it sets `ledger`); the client then opens one root span per
`acomplete`, cached answers included, and closes it with what came back. The span is made with
`mlflow.start_span_no_context` and carries its run and experiment explicitly (trace metadata
`mlflow.sourceRun`, the experiment id), so it does not depend on which thread or event loop the call runs on,
nor on MLflow's active run (a thread-local) or tracing context (contextvars). MLflow writes traces on its own
background threads (async trace logging, on by default); the run flushes them before it ends.

What a trace holds (docs/tracking.md): inputs = the messages and the request parameters (the config's
sampling settings, the JSON schema), outputs = the answer text and its JSON when it is JSON (ratings,
description, samples); span attributes and trace tags: stage, feature, purpose, prompt kind, model string,
cache hit or miss, attempts, tokens, cost, latency, whether the answer was valid. The API key is never
handed to the tracer; every string is passed through the redaction used everywhere (harness.secrets) and
has the key's value removed, in case a backend echoed it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
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
CACHE_TAG = "harness.cache"  # "hit" (answered from the response cache, the backend not asked) or "miss"
STATUS_TAG = "harness.status"  # "ok", "invalid" (the validator rejected the last answer) or "error"
TRACE_TAGS = (STAGE_TAG, FEATURE_TAG, PURPOSE_TAG, KIND_TAG, MODEL_TAG, CACHE_TAG, STATUS_TAG)
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

    def for_stage(self, name: str) -> CallTracer:
        """The same run, each trace tagged with stage `name`."""
        return replace(self, stage=name)

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
        """Open the call's trace; None when tracing is off or MLflow failed (a call never fails for a trace)."""
        import mlflow
        from mlflow.entities import SpanType

        context = dict(context or {})
        tags = {STAGE_TAG: self.stage, MODEL_TAG: model}
        if kind:
            tags[KIND_TAG] = kind
        if context.get("feature") is not None:
            tags[FEATURE_TAG] = str(context["feature"])
        if context.get("purpose"):
            tags[PURPOSE_TAG] = str(context["purpose"])
        name = ".".join(part for part in (self.stage, str(context.get("purpose") or kind or "call")) if part)
        attributes = {f"harness.{key}": _clean(value, secrets) for key, value in context.items()}
        attributes |= {STAGE_TAG: self.stage, MODEL_TAG: model, KIND_TAG: kind or ""}
        try:
            span = mlflow.start_span_no_context(
                name,
                span_type=SpanType.CHAT_MODEL,
                inputs={"messages": _clean(list(messages), secrets), "params": _clean(dict(params), secrets)},
                attributes=attributes,
                tags={key: redact_text(value) for key, value in tags.items()},
                metadata={SOURCE_RUN_METADATA: self.run_id},
                experiment_id=self.experiment_id,
            )
        except Exception as error:  # tracing is best effort: the call goes on without its trace
            self._warn_once(error)
            return None
        return CallSpan(span, tuple(secret for secret in secrets if secret), time.perf_counter())

    def _warn_once(self, error: BaseException) -> None:
        if not self._failed[0]:
            self._failed[0] = True
            logger.warning("cannot record LLM calls as MLflow traces (%s); the run goes on without them", type(error).__name__)


@dataclass
class CallSpan:
    """One call's open trace; `finish` records what came back and closes it."""

    span: Any
    secrets: tuple[str, ...]
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
                {"input_tokens": prompt_tokens, "output_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
            )
            trace_tags = {CACHE_TAG: "hit" if cached else "miss", STATUS_TAG: status}
            self._set_trace_tags(span, trace_tags)
            if error is not None:
                span.set_outputs({"error": _clean(error, self.secrets)})
                span.end(status=SpanStatusCode.ERROR)
                return
            answer = _clean(text or "", self.secrets)
            span.set_outputs({"answer": answer, "json": _clean(answer_json(answer), self.secrets)})
            span.end(status=SpanStatusCode.OK)
        except Exception:  # best effort, as start
            logger.debug("failed to finish an LLM call's trace", exc_info=True)

    @staticmethod
    def _set_trace_tags(span: Any, tags: Mapping[str, str]) -> None:
        """Tags of the (in-memory) trace, written with it when its root span ends."""
        from mlflow.tracing.trace_manager import InMemoryTraceManager

        with InMemoryTraceManager.get_instance().get_trace(span.trace_id) as trace:
            if trace is not None:
                trace.info.tags.update(tags)

