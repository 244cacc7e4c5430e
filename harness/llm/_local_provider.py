"""The embedded offline backend: model strings `local/<name>` run a chat model in this process.

`local/smollm2-135m` is SmolLM2-135M-Instruct, loaded by harness.model.load_subject_model (any name that
loader accepts works: an embedded name, a local folder, a cached hub id). It is registered as a litellm
custom provider, so it goes through the same litellm.acompletion path as every remote backend. Requests
that arrive together are micro-batched into one left-padded `generate` call; decoding is greedy unless
a temperature > 0 is asked for. Sampling draws each request's tokens from a random stream of its own,
seeded by its `seed` (0 when it has none), so a sampled answer does not depend on which other requests
happened to share its batch: a run repeats (up to float rounding between batch shapes).
`logprobs=True, top_logprobs=k` returns each generated token's log-probability and its k likeliest
alternatives under the model (before temperature), OpenAI-shaped.
A `response_format` ({"type": "json_schema", ...} or {"type": "json_object"}) is honoured by
grammar-constrained decoding (xgrammar): at every step a request's row may only take tokens that keep
its answer valid, and the end-of-turn token only once the JSON is complete, so the answer stops there.
Requests with different schemas, or none, share a batch. The mask applies after the log-probability
recorder and before sampling: log-probabilities stay the model's own (a token the grammar forced can be
unlikely, and alternatives can be tokens the grammar forbade), while the sampled or greedy token always
fits. An answer that runs out of max_tokens inside the JSON is cut (finish_reason "length"): give
schema-constrained requests room for the whole object. It is small and weak: without a schema, answers
are often not what a prompt asks for.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import Choices, Message, ModelResponse
from litellm.types.utils import Usage as LiteLLMUsage

from harness.config import SubjectModelConfig
from harness.errors import HarnessError, LLMError
from harness.llm.logprobs import logprobs_content
from harness.llm.per_loop import PerLoop
from harness.llm.types import TokenLogprobs

LOCAL_PROVIDER = "local"
DEFAULT_MAX_NEW_TOKENS = 256
XGRAMMAR_INSTALL = 'pip install "xgrammar>=0.2.8,<0.3"'


@dataclass(frozen=True)
class GenerationSettings:
    """What must be equal for requests to share one generate call."""

    model_name: str
    max_new_tokens: int
    temperature: float
    top_p: float | None
    top_logprobs: int | None = None  # None: no log-probabilities asked for

    @classmethod
    def from_params(cls, model_name: str, params: dict[str, Any]) -> GenerationSettings:
        max_new_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_NEW_TOKENS
        return cls(
            model_name=model_name,
            max_new_tokens=int(max_new_tokens),
            temperature=float(params.get("temperature") or 0.0),
            top_p=params.get("top_p"),
            top_logprobs=int(params.get("top_logprobs") or 0) if params.get("logprobs") else None,
        )


@dataclass(frozen=True)
class LocalRequest:
    """One conversation to answer, the seed of its sampling (used when the temperature is above 0), and the
    JSON schema its answer must follow (as JSON text, properties in their given order), if any."""

    messages: list[dict[str, Any]]
    seed: int = 0
    schema: str | None = None

    @classmethod
    def from_params(cls, messages: list[dict[str, Any]], params: dict[str, Any]) -> LocalRequest:
        seed = params.get("seed")
        return cls(messages, int(seed) if seed is not None else 0, _schema_of(params.get("response_format")))


def _schema_of(response_format: Any) -> str | None:
    """The JSON schema an OpenAI `response_format` asks for, as JSON text; None for plain text."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if not isinstance(schema, dict):
        raise CustomLLMError(
            status_code=400,
            message="response_format must be {'type': 'json_schema', 'json_schema': {'schema': {...}}}, "
            f"{{'type': 'json_object'}} or {{'type': 'text'}}; got {response_format!r}",
        )
    return json.dumps(schema)  # not sorted: the grammar writes the properties in the schema's order


@dataclass(frozen=True)
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" at the end-of-turn token, "length" when max_new_tokens ran out
    logprobs: tuple[TokenLogprobs, ...] | None = None


def _text_of(content: Any) -> str:
    """Message content as plain text (OpenAI content parts are joined)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


class _MicroBatcher:
    """Collects requests made on one event loop and hands them to `generate` in batches."""

    def __init__(self, provider: LocalChatProvider, gather_window_s: float) -> None:
        self._provider = provider
        self._gather_window_s = gather_window_s
        self._pending: list[tuple[GenerationSettings, LocalRequest, asyncio.Future[Generated]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, settings: GenerationSettings, request: LocalRequest) -> Generated:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Generated] = loop.create_future()
        self._pending.append((settings, request, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self._gather_window_s)  # requests started in the same moment join this batch
            settings = self._pending[0][0]
            batch = [item for item in self._pending if item[0] == settings][: self._provider.max_batch_size]
            taken = {id(item) for item in batch}
            self._pending = [item for item in self._pending if id(item) not in taken]
            live = [(request, future) for _, request, future in batch if not future.done()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._provider.generate, settings, [request for request, _ in live])
            except Exception as error:  # every waiting request learns why its batch failed
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(live, results):
                if not future.done():
                    future.set_result(result)


class LocalChatProvider(CustomLLM):
    """litellm handler for `local/<model name>`.

    Args:
        max_batch_size: most requests per generate call.
        gather_window_s: how long the first request of a batch waits for others to join.
    """

    def __init__(self, max_batch_size: int = 16, gather_window_s: float = 0.01) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size
        self.gather_window_s = gather_window_s
        self.generate_calls = 0
        self.generated_sequences = 0
        self.grammars = _Grammars()
        self._generate_lock = threading.Lock()
        self._batchers = PerLoop(lambda: _MicroBatcher(self, gather_window_s))

    def generate(self, settings: GenerationSettings, requests: list[LocalRequest]) -> list[Generated]:
        """One batched generate call over chat-templated, left-padded prompts."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from harness.model import load_subject_model

        try:
            loaded = load_subject_model(SubjectModelConfig(name=settings.model_name))
        except HarnessError as error:
            # status 404: litellm maps it to NotFoundError, which the client does not retry
            raise CustomLLMError(status_code=404, message=f"local model {settings.model_name!r}: {error}") from error
        tokenizer, model = loaded.tokenizer, loaded.model
        if getattr(tokenizer, "chat_template", None) is None:
            raise CustomLLMError(
                status_code=400,
                message=f"local model {settings.model_name!r} has no chat template; use an instruction-tuned model",
            )
        prompts = [
            tokenizer.apply_chat_template(
                [{"role": m.get("role", "user"), "content": _text_of(m.get("content"))} for m in messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            for messages in (request.messages for request in requests)
        ]
        encoded, shared = _shared_prefix_inputs(
            [tokenizer(prompt, add_special_tokens=False).input_ids for prompt in prompts], tokenizer.pad_token_id
        )
        encoded = {name: tensor.to(loaded.device) for name, tensor in encoded.items()}
        # The recorder sees the model's own scores first, then the grammars mask what the schemas forbid;
        # sampling is done by _SeededSampling (one random stream per request), so generate itself stays greedy.
        recorder = _LogprobRecorder(settings.top_logprobs) if settings.top_logprobs is not None else None
        processors = LogitsProcessorList([recorder] if recorder else [])
        if any(request.schema is not None for request in requests):
            grammars = [
                None if request.schema is None else self.grammars.compiled(settings.model_name, loaded, request.schema)
                for request in requests
            ]
            processors.append(_GrammarMask(grammars, model.config.vocab_size))
        if settings.temperature > 0:
            seeds = [request.seed for request in requests]
            processors.append(_SeededSampling(seeds, settings.temperature, settings.top_p))
        generation_config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        with self._generate_lock, torch.inference_mode():
            if shared:  # one pass over the shared prefix, its cache repeated for every row
                # transformers 5 names the key/value cache `cache`, 4.x `past_key_values`.
                name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
                cache = getattr(model(input_ids=encoded["input_ids"][:1, :shared], use_cache=True), name)
                cache.batch_repeat_interleave(len(prompts))
                encoded[name] = cache
            output = model.generate(**encoded, generation_config=generation_config, logits_processor=processors)
            self.generate_calls += 1
            self.generated_sequences += len(prompts)
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            top = recorder.rows(new_tokens) if recorder else None
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        results = []
        for index, (row, prompt_tokens) in enumerate(zip(new_tokens.tolist(), prompt_lengths)):
            stopped = tokenizer.eos_token_id in row
            length = row.index(tokenizer.eos_token_id) + 1 if stopped else len(row)
            text = tokenizer.decode(row[:length], skip_special_tokens=True).strip()
            logprobs = None
            if top is not None:
                # The end-of-turn token is not part of the answer text; OpenAI leaves it out too.
                written = length - 1 if stopped else length
                logprobs = tuple(_decoded_alternatives(tokenizer, top[index][step]) for step in range(written))
            results.append(Generated(text, int(prompt_tokens), length, "stop" if stopped else "length", logprobs))
        return results

    @staticmethod
    def _response(
        model_response: ModelResponse, model: str, result: Generated, top_logprobs: int | None
    ) -> ModelResponse:
        message = Message(role="assistant", content=result.text)
        logprobs = None
        if result.logprobs is not None:
            logprobs = {"content": logprobs_content(result.logprobs, top_logprobs or 0)}
        model_response.choices = [
            Choices(index=0, finish_reason=result.finish_reason, message=message, logprobs=logprobs)
        ]
        model_response.model = f"{LOCAL_PROVIDER}/{model}"
        model_response.created = int(time.time())
        model_response.usage = LiteLLMUsage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        )
        return model_response

    # litellm calls handlers with keyword arguments; the ones not named here (api_base, api_key, logging
    # objects, timeout, ...) mean nothing to an in-process model.
    def completion(
        self, model: str, messages: list, *, model_response: ModelResponse, optional_params: dict, **_: Any
    ) -> ModelResponse:
        settings = GenerationSettings.from_params(model, optional_params)
        [result] = self.generate(settings, [LocalRequest.from_params(messages, optional_params)])
        return self._response(model_response, model, result, settings.top_logprobs)

    async def acompletion(
        self, model: str, messages: list, *, model_response: ModelResponse, optional_params: dict, **_: Any
    ) -> ModelResponse:
        settings = GenerationSettings.from_params(model, optional_params)
        result = await self._batchers.get().submit(settings, LocalRequest.from_params(messages, optional_params))
        return self._response(model_response, model, result, settings.top_logprobs)


class _Grammars:
    """Compiled grammars by model and schema text: a schema is compiled once per process (a long bounded
    string, such as a description's maxLength, takes seconds to compile)."""

    def __init__(self) -> None:
        self._compilers: dict[str, Any] = {}
        self._compiled: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.compilations = 0

    def compiled(self, model_name: str, loaded: Any, schema: str) -> Any:
        """The xgrammar CompiledGrammar of `schema` for the model's tokenizer."""
        with self._lock:
            key = (model_name, schema)
            if key not in self._compiled:
                if model_name not in self._compilers:
                    self._compilers[model_name] = _grammar_compiler(loaded)
                compiler = self._compilers[model_name]
                try:
                    # compact JSON: free whitespace would let a weak model pad its answer until max_tokens
                    self._compiled[key] = compiler.compile_json_schema(schema, any_whitespace=False)
                except RuntimeError as error:  # xgrammar's errors for schemas it cannot turn into a grammar
                    raise CustomLLMError(
                        status_code=400, message=f"response_format: xgrammar cannot compile the JSON schema: {error}"
                    ) from error
                self.compilations += 1
            return self._compiled[key]


def _grammar_compiler(loaded: Any) -> Any:
    try:
        import xgrammar
    except ImportError as error:
        # status 400: not retried; the client's message names the install command
        raise CustomLLMError(
            status_code=400,
            message=f"response_format needs xgrammar for the local model ({error}); install it: {XGRAMMAR_INSTALL}",
        ) from error
    tokenizer = loaded.tokenizer
    info = xgrammar.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=loaded.model.config.vocab_size, stop_token_ids=[tokenizer.eos_token_id]
    )
    return xgrammar.GrammarCompiler(info, cache_enabled=False)  # _Grammars is the cache


class _GrammarMask:
    """A logits processor that leaves each constrained row only the tokens its grammar allows next (the
    end-of-turn token once the JSON is complete); rows without a grammar are left as they are."""

    def __init__(self, grammars: list[Any], vocab_size: int) -> None:
        import xgrammar

        self.matchers = [None if grammar is None else xgrammar.GrammarMatcher(grammar) for grammar in grammars]
        self.bitmask = xgrammar.allocate_token_bitmask(len(grammars), vocab_size)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar

        live = [(row, matcher) for row, matcher in enumerate(self.matchers) if matcher and not matcher.is_terminated()]
        if self._started:
            for row, matcher in live:
                token = int(input_ids[row, -1])
                if not matcher.accept_token(token):
                    raise RuntimeError(f"row {row}: token {token} was generated against its grammar")
            live = [(row, matcher) for row, matcher in live if not matcher.is_terminated()]
        self._started = True
        for row, matcher in live:
            matcher.fill_next_token_bitmask(self.bitmask, row)
        if live:
            rows = [row for row, _ in live]
            xgrammar.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), indices=rows)
        return scores


# Prompts of one batch sharing at least this many leading tokens (a prompt kind's instructions) have them
# computed once: one forward over the shared prefix, its key/value cache repeated for every row.
MIN_SHARED_PREFIX_TOKENS = 16


def _shared_prefix_inputs(rows: list[list[int]], pad_id: int) -> tuple[dict[str, Any], int]:
    """generate's inputs for token rows, [shared prefix][left padding][row's own tokens], and the prefix length.

    The padding sits after the prefix, masked out; position ids follow the mask, so each row sees the
    positions it would see alone. Rows sharing fewer than MIN_SHARED_PREFIX_TOKENS (or a single row) are
    plain left-padded rows and the prefix length is 0.
    """
    import torch

    shared = 0
    shortest = min(len(row) for row in rows)
    while shared < shortest - 1 and all(row[shared] == rows[0][shared] for row in rows):
        shared += 1
    if len(rows) < 2 or shared < MIN_SHARED_PREFIX_TOKENS:
        shared = 0
    width = max(len(row) for row in rows)
    padded = [row[:shared] + [pad_id] * (width - len(row)) + row[shared:] for row in rows]
    mask = [[1] * shared + [0] * (width - len(row)) + [1] * (len(row) - shared) for row in rows]
    return {"input_ids": torch.tensor(padded), "attention_mask": torch.tensor(mask)}, shared


class _SeededSampling:
    """A logits processor that samples each row's next token from that row's own generator (temperature,
    then nucleus top_p) and leaves only that token possible, so greedy decoding takes it.

    generate's own sampling draws every row from one random stream, so a row's answer would depend on the
    other rows of its batch; here it depends only on its seed and its own logits.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float | None) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probabilities = torch.softmax(scores.float().cpu() / self.temperature, dim=-1)
        if self.top_p is not None and self.top_p < 1:
            ordered, order = probabilities.sort(dim=-1, descending=True)
            outside = ordered.cumsum(dim=-1) - ordered > self.top_p  # the likeliest token always stays
            probabilities = probabilities.scatter(-1, order, ordered.masked_fill(outside, 0.0))
        chosen = torch.cat(
            [torch.multinomial(row, 1, generator=generator) for row, generator in zip(probabilities, self.generators)]
        )
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(1, chosen[:, None].to(scores.device), 0.0)


class _LogprobRecorder:
    """A logits processor that keeps, per step and row, the top k (token id, log-probability) and the
    log-probability of the token that was then generated; it changes no score.

    Only one step's full distribution is held at a time (batch x vocabulary): the generated token is read
    from the next step's input, or from the finished sequences after the last step.
    """

    def __init__(self, top: int) -> None:
        self.top = top
        self._steps: list[tuple[list[list[int]], list[list[float]]]] = []
        self._chosen: list[tuple[list[int], list[float]]] = []
        self._last: Any = None  # the latest step's log-probabilities, until its generated tokens are known

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._last is not None:
            self._settle(input_ids[:, -1])
        self._last = torch.log_softmax(scores.float(), dim=-1)
        best = self._last.topk(max(self.top, 1), dim=-1)
        self._steps.append((best.indices.tolist(), best.values.tolist()))
        return scores

    def _settle(self, chosen_ids: Any) -> None:
        chosen = self._last.gather(1, chosen_ids[:, None].to(self._last.device))[:, 0]
        self._chosen.append((chosen_ids.tolist(), chosen.tolist()))
        self._last = None

    def rows(self, new_tokens: Any) -> list[list[tuple[int, float, list[tuple[int, float]]]]]:
        """Per row and step: the generated token id, its log-probability, and the top k (id, logprob)."""
        if self._last is not None:
            self._settle(new_tokens[:, len(self._steps) - 1])
        return [
            [
                (chosen_ids[row], chosen[row], list(zip(ids[row], values[row]))[: self.top])
                for (ids, values), (chosen_ids, chosen) in zip(self._steps, self._chosen)
            ]
            for row in range(new_tokens.shape[0])
        ]


def _decoded_alternatives(tokenizer: Any, step: tuple[int, float, list[tuple[int, float]]]) -> TokenLogprobs:
    token_id, logprob, alternatives = step
    token = tokenizer.decode([token_id])
    decoded: dict[str, float] = {}
    for alternative_id, alternative_logprob in alternatives:
        # Two ids can decode to the same text (rare byte pieces); keep the likelier one.
        decoded.setdefault(tokenizer.decode([alternative_id]), alternative_logprob)
    decoded.setdefault(token, logprob)
    return token, decoded


_registration_lock = threading.Lock()


def register_local_provider() -> LocalChatProvider:
    """Register the `local` provider with litellm (idempotent) and return its handler."""
    with _registration_lock:
        for item in litellm.custom_provider_map:
            if item["provider"] == LOCAL_PROVIDER:
                handler = item["custom_handler"]
                if not isinstance(handler, LocalChatProvider):
                    raise LLMError(
                        f"another litellm custom provider is registered as {LOCAL_PROVIDER!r} "
                        f"({type(handler).__name__}); remove it from litellm.custom_provider_map"
                    )
                return handler
        handler = LocalChatProvider()
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": LOCAL_PROVIDER, "custom_handler": handler},
        ]
        litellm.utils.custom_llm_setup()
        return handler
