"""The one way the harness calls an LLM: litellm.acompletion under a concurrency bound, with retries,
an on-disk response cache, answer validation and accounting.

A backend is a litellm model string in LLMConfig ('openai/gpt-4o-mini', 'azure/<deployment>',
'anthropic/claude-...', 'ollama/llama3', 'openai/<name>' + api_base for vLLM or any OpenAI-compatible
server, 'local/smollm2-135m' for the embedded offline model). Requests to an OpenAI-compatible server skip
litellm and go through the openai SDK (harness.llm._direct; llm.transport): litellm's per-call CPU is the
ceiling of a fast served judge. Everything around the request is the same on both paths. The API key is
read from the environment variable named by `api_key_env` at call time and handed to litellm or the SDK;
it is never stored, logged, cached, and it is scrubbed from every error message.

A caller says what an answer should be with an AnswerFormat (harness.llm.schemas): its JSON schema goes out
as `response_format` where llm.structured_output says, and every answer is counted per prompt kind, parsed
or not (Usage.answers, Usage.parsed).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import email.utils
import logging
import os
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import litellm
import openai
from tqdm.auto import tqdm

from harness.config import DEFAULT_CACHE_DIR, LLM_BACKEND_SETTINGS, LLMConfig, identity_payload
from harness.errors import LLMError
from harness.llm._cache import CachedResponse, ResponseCache, cache_key
from harness.llm._direct import DirectChat
from harness.llm._local_provider import LOCAL_PROVIDER, register_local_provider
from harness.llm.ledger import UsageLedger
from harness.llm.logprobs import token_logprobs
from harness.llm.per_loop import LoopThread, PerLoop, gather_or_cancel
from harness.llm.schemas import AnswerFormat
from harness.llm.tracing import CallSpan, CallTracer
from harness.llm.types import Completion, Usage
from harness.secrets import redact_text, scrub_keys, watch_key_variable

logger = logging.getLogger(__name__)

Messages = list[dict[str, Any]]
Validator = Callable[[str], bool]

# Parameters the client sets itself; a caller passing them would bypass retries, timeouts or key handling.
_RESERVED_PARAMS = frozenset(
    {"model", "messages", "api_key", "api_base", "base_url", "timeout", "max_retries", "num_retries", "stream"}
)
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
UNUSED_API_KEY = "no-key"  # sent to keyless OpenAI-compatible servers
_UNPRICED_MODELS: set[str] = set()  # models whose missing price was told already


def _quiet_litellm() -> None:
    """litellm's own logging must never print request details (headers carry the key)."""
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        named = logging.getLogger(name)
        if named.getEffectiveLevel() < logging.WARNING:
            named.setLevel(logging.WARNING)


def _retry_after_s(error: BaseException) -> float | None:
    """The wait a 429/503 answer asked for (retry-after-ms, or Retry-After in seconds or as a date)."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or getattr(error, "litellm_response_headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return max(float(headers["retry-after-ms"]) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, AttributeError):
        return None


class UnusableAnswer(Exception):
    """The backend answered, but with nothing a caller can use (no choices, or longer than
    llm.max_answer_chars): retried like a server error, then failed; never a result."""


def _is_retryable(error: BaseException) -> bool:
    # openai's connection errors (timeouts among them) are litellm's too: its own subclass them
    if isinstance(error, (asyncio.TimeoutError, openai.APIConnectionError, UnusableAnswer)):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(status, int) and (status in _RETRYABLE_STATUS or status >= 500)


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "TimeoutError: no answer within the timeout"
    status = getattr(error, "status_code", None)
    prefix = f"{type(error).__name__} (HTTP {status})" if isinstance(status, int) else type(error).__name__
    message = " ".join(str(error).split())
    return f"{prefix}: {message[:1000]}" if message else prefix


def _hint(error: BaseException, config: LLMConfig, request_params: dict[str, Any]) -> str:
    status = getattr(error, "status_code", None)
    if status in (401, 403):
        where = f"${config.api_key_env} (llm.api_key_env)" if config.api_key_env else "llm.api_key_env"
        return f"check the key in {where} and its access to this model"
    if status == 404:
        return "check llm.model and llm.api_base"
    if status == 400:
        hint = "check llm.model, llm.max_tokens and llm.extra_params"
        if request_params.get("logprobs"):
            hint += "; this request asked for token log-probabilities, which some backends refuse (scorers.<name>.logprobs: off)"
        if request_params.get("response_format"):
            hint += (
                "; this request asked for a JSON-schema answer, which some backends refuse (llm.structured_output: off)"
            )
        return hint
    if isinstance(error, UnusableAnswer):
        return "check the backend and llm.max_tokens (or raise llm.max_answer_chars)"
    if _is_retryable(error):
        return "check that the backend is up, or raise llm.max_retries / llm.timeout_s"
    return "see the cause above"


@dataclasses.dataclass
class _LedgerLine:
    """What one `acomplete` counted, written to the ledger as one line when the call ends (answered, failed or
    cancelled) instead of one line per count: a kill loses at most the counts of the calls then in flight."""

    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    answers: Counter[str] = dataclasses.field(default_factory=Counter)
    parsed: Counter[str] = dataclasses.field(default_factory=Counter)

    def write(self, ledger: UsageLedger) -> None:
        if self.counts or self.answers:
            kinds = {"answers": dict(self.answers), "parsed": dict(self.parsed)} if self.answers else None
            ledger.record(dict(self.counts), kinds)


# The line of the `acomplete` running in this task (asyncio gives each task its own context).
_ledger_line: contextvars.ContextVar[_LedgerLine | None] = contextvars.ContextVar("ledger_line", default=None)


class LLMClient:
    """Calls one backend concurrently, with retries, caching, validation and accounting.

    Concurrency is bounded per event loop (`config.concurrency` requests in flight); backoff waits do not
    hold a slot. Each request is retried on 429, 5xx, timeouts and connection errors with exponential
    backoff and jitter, or after the server's Retry-After, up to `config.max_retries` times; other errors
    (bad key, unknown model, bad parameters) fail at once. An answer that a validator rejects is asked
    again, bypassing the cache, up to `config.max_invalid_retries` times.

    Args:
        config: the backend and its limits.
        cache_dir: folder of the response cache (`config.cache_path` overrides the file).
        progress: show a tqdm bar in complete_many.
    """

    def __init__(self, config: LLMConfig, cache_dir: str | Path = DEFAULT_CACHE_DIR, *, progress: bool = True) -> None:
        _quiet_litellm()
        watch_key_variable(config.api_key_env)
        self.config = config
        self.progress = progress
        if config.model.startswith(f"{LOCAL_PROVIDER}/"):
            register_local_provider()
        try:
            _, self.provider, _, _ = litellm.get_llm_provider(config.model, api_base=config.api_base)
        except Exception as error:  # litellm raises plain exceptions for unknown providers
            raise LLMError(
                f"llm.model {config.model!r} is not a model string litellm understands ({_describe(error)}); "
                "use '<provider>/<model>', e.g. 'openai/gpt-4o-mini', 'ollama/llama3' or 'local/smollm2-135m'"
            ) from None
        self.cache: ResponseCache | None = None
        if config.cache:
            self.cache = ResponseCache(config.cache_path or Path(cache_dir) / "llm-cache.sqlite")
        self._price_params = self._prices()
        # The openai SDK directly where llm.transport says so (harness.llm._direct); litellm otherwise.
        direct = config.transport == "openai" or (
            config.transport == "auto" and self.provider == "openai" and bool(config.api_base)
        )
        self._direct = DirectChat(config.api_base, config.timeout_s, config.concurrency) if direct else None
        self._backend_identity = identity_payload(config, only=LLM_BACKEND_SETTINGS)  # part of every cache key
        self._sends_response_format: bool | None = None
        self._usage = Usage()
        self._usage_lock = threading.Lock()
        # Set by a tracked run: every count is also appended there, so a killed process's spend survives.
        self.ledger: UsageLedger | None = None
        # Set by a tracked run: every call (cached ones too) is also recorded as an MLflow trace of the run.
        self.tracer: CallTracer | None = None
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(config.concurrency))
        self._random = random.Random()
        # complete_many's loop: the connections a batch opens serve the next ones. Ended by close(), or when
        # the client is collected or the process exits (the loop does not hold the client).
        self._batches = LoopThread("llm-batches")
        weakref.finalize(self, self._batches.close)

    @property
    def usage(self) -> Usage:
        """A snapshot of what this client has done so far."""
        with self._usage_lock:
            return copy.deepcopy(self._usage)

    @property
    def backend(self) -> str:
        """Provider, model and api_base, for messages (no credentials)."""
        base = redact_text(self.config.api_base or "")
        return f"{self.provider} model {self.config.model!r}" + (f" at {base}" if base else "")

    @property
    def supports_logprobs(self) -> bool:
        """Whether litellm passes `logprobs`/`top_logprobs` to this backend (OpenAI-compatible ones, local)."""
        model_name = self.config.model.split("/", 1)[-1]
        try:
            supported = litellm.get_supported_openai_params(model=model_name, custom_llm_provider=self.provider)
        except Exception:  # litellm raises plain exceptions for providers it cannot map
            return False
        return "logprobs" in (supported or ())

    @property
    def supports_response_format(self) -> bool:
        """Whether this backend takes a JSON-schema `response_format` (what llm.structured_output 'auto' sends to).

        The local model always does (grammar-constrained decoding); others when litellm's model map says the
        model supports response schemas, or when llm.api_base names a self-hosted server of a provider whose
        API has `response_format` (vLLM, SGLang, llama.cpp, Ollama and the loopback server take schemas;
        litellm's map cannot know what a self-hosted server runs).
        """
        if self.provider == LOCAL_PROVIDER:
            return True
        model_name = self.config.model.split("/", 1)[-1]
        try:
            if litellm.supports_response_schema(model=model_name, custom_llm_provider=self.provider):
                return True
            supported = litellm.get_supported_openai_params(model=model_name, custom_llm_provider=self.provider)
        except Exception:  # litellm raises plain exceptions for providers it cannot map
            return False
        return bool(self.config.api_base) and "response_format" in (supported or ())

    @property
    def sends_response_format(self) -> bool:
        """Whether requests with an AnswerFormat carry its schema: llm.structured_output resolved (once: litellm's
        model map is slow to ask on every call)."""
        if self._sends_response_format is None:
            setting = self.config.structured_output
            self._sends_response_format = setting == "on" or (setting == "auto" and self.supports_response_format)
        return self._sends_response_format

    @property
    def transport(self) -> str:
        """'openai' when requests go through the openai SDK directly, else 'litellm' (llm.transport resolved)."""
        return "openai" if self._direct is not None else "litellm"

    def _prices(self) -> dict[str, float]:
        """Per-token prices handed to litellm: the config's, 0 for the local model, else litellm's map."""
        config = self.config
        if config.input_cost_per_token is not None or config.output_cost_per_token is not None:
            return {
                "input_cost_per_token": config.input_cost_per_token or 0.0,
                "output_cost_per_token": config.output_cost_per_token or 0.0,
            }
        if self.provider == LOCAL_PROVIDER:
            return {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
        try:
            info = litellm.get_model_info(config.model)
            if info.get("input_cost_per_token") is not None:
                return {}
        except Exception:  # not in the price map: litellm raises a plain Exception
            pass
        if config.model not in _UNPRICED_MODELS:  # once per model and process, not once per client
            _UNPRICED_MODELS.add(config.model)
            logger.warning(
                "litellm's price map has no price for %r; its cost is counted as 0 USD. "
                "Set llm.input_cost_per_token and llm.output_cost_per_token to count it.",
                config.model,
            )
        return {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}

    def _count(self, **counts: int | float) -> None:
        with self._usage_lock:
            for name, value in counts.items():
                setattr(self._usage, name, getattr(self._usage, name) + value)
        if self.ledger is not None:
            line = _ledger_line.get()
            if line is None:
                self.ledger.record(counts)
            else:
                line.counts.update(counts)

    def _count_answer(self, answer_format: AnswerFormat | None, text: str) -> bool | None:
        """Count an answer of its prompt kind; whether it parsed (None without an AnswerFormat)."""
        if answer_format is None:
            return None
        parsed = answer_format.parses(text)
        with self._usage_lock:
            kind = answer_format.kind
            self._usage.answers[kind] = self._usage.answers.get(kind, 0) + 1
            self._usage.parsed[kind] = self._usage.parsed.get(kind, 0) + int(parsed)
        if self.ledger is not None:
            line = _ledger_line.get()
            if line is None:
                self.ledger.record({}, {"answers": {kind: 1}, "parsed": {kind: int(parsed)}})
            else:
                line.answers[kind] += 1
                line.parsed[kind] += int(parsed)
        return parsed

    def _api_key(self) -> str | None:
        name = self.config.api_key_env
        if name is None:
            if self.config.api_base and self.config.model.startswith("openai/") and "OPENAI_API_KEY" not in os.environ:
                # A self-hosted OpenAI-compatible server (vLLM, the loopback server) usually wants no key,
                # but the OpenAI client refuses to send a request without one.
                return UNUSED_API_KEY
            return None  # litellm then reads its provider's usual variable (OPENAI_API_KEY, ...)
        value = os.environ.get(name)
        if not value:
            raise LLMError(
                f"LLM backend {self.backend}: the environment variable {name} (named in llm.api_key_env) "
                f"is not set or empty; export {name}=<your key> before running"
            )
        return value

    def _request_params(self, params: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(_RESERVED_PARAMS & params.keys())
        if reserved:
            raise LLMError(
                f"parameters {reserved} are set by the LLM client from llm config (model, api_base, "
                "api_key_env, timeout_s, max_retries) and cannot be passed per call"
            )
        return {
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            **self.config.extra_params,
            **params,
        }

    async def acomplete(
        self,
        messages: Messages,
        *,
        validate: Validator | None = None,
        answer_format: AnswerFormat | None = None,
        trace_context: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        """Answer one conversation, from the cache when it holds the answer.

        Args:
            messages: OpenAI-style chat messages ({'role', 'content'} dicts).
            validate: optional check of the answer text; a rejected answer is asked again without the
                cache, and is never cached. When the re-ask budget runs out, the last answer comes back
                with `valid=False`.
            answer_format: what the answer should be: its schema is sent as `response_format` when
                `sends_response_format`, and the answer is counted in `usage.answers`/`usage.parsed`.
            trace_context: what the call is about, for its trace when `tracer` is set (e.g. `feature`,
                `purpose`); never sent.
            **params: litellm sampling parameters overriding the config's (temperature, max_tokens, ...).

        Raises:
            LLMError: the backend failed for good (retries exhausted or a non-retryable error); the
                message names the backend, the model and the cause.
        """
        well_formed = isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)
        if not messages or not well_formed:
            raise LLMError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        if answer_format is not None and self.sends_response_format:
            params = {"response_format": answer_format.response_format, **params}
        request_params = self._request_params(params)
        line = _LedgerLine() if self.ledger is not None else None
        token = _ledger_line.set(line)
        try:
            return await self._answer(messages, request_params, validate, answer_format, trace_context)
        finally:
            _ledger_line.reset(token)
            if line is not None and self.ledger is not None:
                line.write(self.ledger)

    async def _answer(
        self,
        messages: Messages,
        request_params: dict[str, Any],
        validate: Validator | None,
        answer_format: AnswerFormat | None,
        trace_context: Mapping[str, Any] | None,
    ) -> Completion:
        """`acomplete` once its request is made: from the cache, else from the backend (counted, traced)."""
        key = cache_key(self._backend_identity, messages, request_params)
        self._count(requests=1)
        span = self._start_span(messages, request_params, answer_format, trace_context)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:  # written before answers were scrubbed of keys, maybe
                hit = dataclasses.replace(hit, text=scrub_keys(hit.text))
            if hit is not None and (validate is None or validate(hit.text)):
                self._count(cache_hits=1)
                parsed = self._count_answer(answer_format, hit.text)
                if span is not None:
                    span.finish(text=hit.text, cached=True, valid=True, parsed=parsed)
                return Completion(hit.text, 0, 0, 0.0, cached=True, model=hit.model, attempts=0, logprobs=hit.logprobs)
        try:
            completion = await self._call_with_retries(messages, request_params, validate)
        except LLMError as error:
            self._count(failures=1)
            if span is not None:
                span.finish(error=str(error))
            raise
        except BaseException:
            if span is not None:
                span.finish(error="cancelled")
            raise
        if completion.valid and self.cache is not None:
            self.cache.put(key, CachedResponse.of(completion))
        parsed = self._count_answer(answer_format, completion.text)
        if span is not None:
            span.finish(
                text=completion.text,
                valid=completion.valid,
                parsed=parsed,
                attempts=completion.attempts,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost_usd=completion.cost_usd,
            )
        return completion

    def _start_span(
        self,
        messages: Messages,
        request_params: dict[str, Any],
        answer_format: AnswerFormat | None,
        trace_context: Mapping[str, Any] | None,
    ) -> CallSpan | None:
        """The call's trace when a tracked run set `tracer` (harness.llm.tracing), else None."""
        if self.tracer is None:
            return None
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        return self.tracer.start(
            model=self.config.model,
            messages=messages,
            params=request_params,
            kind=answer_format.kind if answer_format is not None else None,
            context=trace_context,
            secrets=[key] if key else [],
        )

    async def _call_with_retries(
        self, messages: Messages, request_params: dict[str, Any], validate: Validator | None
    ) -> Completion:
        config = self.config
        api_key = self._api_key()
        secrets = [api_key] if api_key else []
        if self._direct is not None:  # the model without its provider, as litellm sends it
            call = {"model": config.model.removeprefix("openai/"), "messages": messages, "api_key": api_key}
            call["params"] = request_params
        else:
            call = {
                "model": config.model,
                "messages": messages,
                "api_base": config.api_base,
                "api_key": api_key,
                "timeout": config.timeout_s,
                "max_retries": 0,  # retries are ours, so they are counted and bounded in one place
                **self._price_params,
                **request_params,
            }
        spent = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        attempts = transport_retries = invalid_retries = 0
        while True:
            attempts += 1
            self._count(calls=1)
            try:
                async with self._semaphores.get():
                    response = await self._send(call)
                text, prompt_tokens, completion_tokens, cost = self._read(response)
                spent["prompt_tokens"] += prompt_tokens
                spent["completion_tokens"] += completion_tokens
                spent["cost_usd"] += cost
                self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost)
                if len(text) > config.max_answer_chars:
                    raise UnusableAnswer(
                        f"the answer has {len(text)} characters, more than llm.max_answer_chars = "
                        f"{config.max_answer_chars}"
                    )
            except Exception as error:
                if not _is_retryable(error) or transport_retries >= config.max_retries:
                    raise self._final_error(error, attempts, secrets, request_params) from None
                transport_retries += 1
                self._count(retries=1)
                delay = self._delay(transport_retries, _retry_after_s(error))
                logger.debug(
                    "%s: attempt %d failed (%s); retrying in %.2f s",
                    self.backend,
                    attempts,
                    self._redact(_describe(error), secrets),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            text = scrub_keys(text)  # a backend may reflect the key it was sent: never stored or published
            logprobs = token_logprobs(response)
            valid = validate is None or validate(text)
            if not valid:
                self._count(invalid_answers=1)
            if valid or invalid_retries >= config.max_invalid_retries:
                return Completion(
                    text, cached=False, model=config.model, attempts=attempts, valid=valid, logprobs=logprobs, **spent
                )
            invalid_retries += 1
            self._count(retries=1)
            logger.debug("%s: answer rejected by the validator; asking again", self.backend)

    async def _send(self, call: dict[str, Any]) -> Any:
        if self.provider == LOCAL_PROVIDER:
            return await litellm.acompletion(**call)  # a local generate cannot hang; it may legitimately be slow
        # Both hand the timeout to the HTTP client; this bound also covers connect and body reads (asyncio.timeout:
        # wait_for would wrap every call in a task of its own).
        async with asyncio.timeout(self.config.timeout_s * 1.5 + 1.0):
            if self._direct is not None:
                return await self._direct.create(**call)
            return await litellm.acompletion(**call)

    def _read(self, response: Any) -> tuple[str, int, int, float]:
        choices = getattr(response, "choices", None)
        if not choices:
            raise UnusableAnswer("the answer has no choices (`choices: []`)")
        text = choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        if self._price_params:
            cost = (
                prompt_tokens * self._price_params["input_cost_per_token"]
                + completion_tokens * self._price_params["output_cost_per_token"]
            )
        elif self._direct is not None:  # litellm's price map, as litellm itself prices an answer
            cost = sum(
                litellm.cost_per_token(
                    model=self.config.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
                )
            )
        else:
            cost = float((getattr(response, "_hidden_params", None) or {}).get("response_cost") or 0.0)
        return text, prompt_tokens, completion_tokens, cost

    def _delay(self, retry_number: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter, or the server's Retry-After (plus a little jitter); never more than
        llm.backoff_max_s nor llm.timeout_s (a `Retry-After: 3600` does not hold a run for hours)."""
        longest = min(self.config.backoff_max_s, self.config.timeout_s)
        if retry_after_s is not None:
            jitter = self._random.uniform(0, min(self.config.backoff_base_s, retry_after_s * 0.1 + 0.01))
            return min(retry_after_s + jitter, longest)
        ceiling = min(longest, self.config.backoff_base_s * 2 ** (retry_number - 1))
        return self._random.uniform(ceiling / 2, ceiling)

    @staticmethod
    def _redact(text: str, secrets: Sequence[str]) -> str:
        """The key sent, and every key the process could have sent (litellm's fallback variables), removed."""
        for secret in secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return redact_text(text)

    def _final_error(
        self, error: BaseException, attempts: int, secrets: Sequence[str], request_params: dict[str, Any]
    ) -> LLMError:
        if _is_retryable(error):
            outcome = f"gave up after {attempts} attempts (llm.max_retries = {self.config.max_retries})"
        else:
            outcome = "not retried: this error does not go away by retrying"
        cause = self._redact(_describe(error), secrets)
        hint = _hint(error, self.config, request_params)
        return LLMError(f"LLM call to {self.backend} failed: {cause}; {outcome}; {hint}")

    async def acomplete_many(
        self,
        conversations: Sequence[Messages],
        *,
        desc: str = "LLM calls",
        validate: Validator | Sequence[Validator] | None = None,
        answer_format: AnswerFormat | Sequence[AnswerFormat] | None = None,
        trace_context: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> list[Completion | LLMError]:
        """Answer many conversations concurrently (bounded); failures come back as LLMError in place.

        Args:
            conversations: one message list per request.
            desc: progress bar label.
            validate: one validator for every answer, or one per conversation (see `acomplete`).
            answer_format: one AnswerFormat for every answer, or one per conversation (see `acomplete`).
            trace_context: one mapping for every call's trace, or one per conversation (see `acomplete`).
            **params: litellm sampling parameters for every request.
        """
        count = len(conversations)
        validators = self._one_each(validate, callable(validate), count, "validators")
        formats = self._one_each(answer_format, isinstance(answer_format, AnswerFormat), count, "answer formats")
        contexts = self._one_each(trace_context, isinstance(trace_context, Mapping), count, "trace contexts")
        bar = tqdm(total=count, desc=desc, unit="call", disable=not self.progress, leave=False)
        start = self.usage if self.progress else Usage()
        # A feature's calls in this batch are one trace, written when its last call is answered; calls start
        # (and open their spans) no faster than the backend takes them, so the traces open at once stay few.
        tracer = self.tracer
        held = Counter(
            context["feature"] for context in contexts if tracer and context and context.get("feature") is not None
        )
        if tracer is not None:
            tracer.hold(held.elements())
        started = asyncio.Semaphore(self.config.concurrency)

        def release(feature: int) -> None:
            # Once per hold: on cancellation the batch's cleanup below may release a call's feature before the
            # call's own `finally` runs.
            if held[feature] <= 0:
                return
            held[feature] -= 1
            tracer.release(feature)

        async def one(
            messages: Messages,
            validator: Validator | None,
            answer: AnswerFormat | None,
            context: Mapping[str, Any] | None,
        ) -> Completion | LLMError:
            try:
                async with started:
                    return await self.acomplete(
                        messages, validate=validator, answer_format=answer, trace_context=context, **params
                    )
            except LLMError as error:
                return error
            finally:
                if tracer is not None and context and context.get("feature") is not None:
                    release(context["feature"])
                if self.progress:  # a snapshot of the usage is a deep copy: not made per call for no bar
                    done = self.usage
                    bar.set_postfix(
                        cached=done.cache_hits - start.cache_hits,
                        retries=done.retries - start.retries,
                        failed=done.failures - start.failures,
                        refresh=False,
                    )
                bar.update(1)

        try:  # a signal raised in one call cancels the others, as asyncio.run's end did for complete_many
            return await gather_or_cancel(*map(one, conversations, validators, formats, contexts))
        finally:
            bar.close()
            for feature in list(held.elements()):  # calls cancelled before they started
                release(feature)

    @staticmethod
    def _one_each(value: Any, single: bool, count: int, what: str) -> list[Any]:
        """A per-conversation argument as one item per conversation: `value` repeated when it is one item."""
        if value is None or single:
            return [value] * count
        items = list(value)
        if len(items) != count:
            raise LLMError(f"got {len(items)} {what} for {count} conversations; give one per conversation")
        return items

    def complete_many(
        self,
        conversations: Sequence[Messages],
        *,
        desc: str = "LLM calls",
        return_exceptions: bool = True,
        validate: Validator | Sequence[Validator] | None = None,
        answer_format: AnswerFormat | Sequence[AnswerFormat] | None = None,
        trace_context: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> list[Completion | LLMError]:
        """Synchronous batch: answers in input order, run concurrently under the bound, with a progress bar.

        Works from any thread: every batch runs in the client's own event loop on a thread of its own, so the
        connections one batch opens serve the next (close() closes them), and batches from several threads
        share the concurrency bound. Called where an event loop is already running (a notebook, an async
        app), it blocks the caller's loop until the batch is done; async code should
        `await acomplete_many(...)` instead. Ctrl-C or SIGTERM while it waits cancels the batch's calls.

        Args:
            conversations: one message list per request.
            desc: progress bar label.
            return_exceptions: True: a failed request is an LLMError in its place. False: every request
                still runs (so finished answers are cached), then the first failure is raised.
            validate: one validator for every answer, or one per conversation (see `acomplete`).
            answer_format: one AnswerFormat for every answer, or one per conversation (see `acomplete`).
            trace_context: one mapping for every call's trace, or one per conversation (see `acomplete`).
            **params: litellm sampling parameters for every request.
        """
        batch = self.acomplete_many(
            conversations,
            desc=desc,
            validate=validate,
            answer_format=answer_format,
            trace_context=trace_context,
            **params,
        )
        results = self._batches.run(batch)
        if not return_exceptions:
            failures = [result for result in results if isinstance(result, LLMError)]
            if failures:
                raise LLMError(f"{len(failures)} of {len(results)} LLM calls failed; the first: {failures[0]}")
        return results

    def close(self) -> None:
        """End complete_many's loop, closing the connections it opened, and close the cache."""
        self._batches.close()
        if self.cache is not None:
            self.cache.close()
