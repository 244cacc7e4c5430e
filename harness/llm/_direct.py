"""The direct path to an OpenAI-compatible server: the openai SDK's AsyncOpenAI, without litellm.

litellm costs ~3-6 ms of CPU per call (logging, cost bookkeeping, its own request building) on top of the
SDK it calls; a served judge (vLLM, SGLang, llama.cpp server) answers faster than that, so at scale litellm
is the ceiling (benchmarks/README.md#bench_llm_client). LLMClient sends through this path when
`llm.transport` says so and litellm for every other provider; retries, timeouts, keys, the cache and the
accounting stay LLMClient's, so both paths give the same answers and the same counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from harness.llm.per_loop import PerLoop


class DirectChat:
    """Chat completions through AsyncOpenAI, one SDK client per event loop and key (their HTTP pools
    belong to one loop; they are closed when run_to_end or LLMClient's LoopThread ends the loop), none of the
    SDK's own retries.

    Args:
        api_base: the server's `/v1` address (None: the OpenAI API).
        timeout_s: the HTTP timeout of one request.
        concurrency: the most requests in flight: that many connections stay open between requests (the SDK
            keeps 100, so above that bound every batch closed and opened connections all along).
    """

    def __init__(self, api_base: str | None, timeout_s: float, concurrency: int) -> None:
        self.api_base = api_base
        self.timeout_s = timeout_s
        limits = openai.DEFAULT_CONNECTION_LIMITS  # httpx's or its fork's Limits, as this SDK uses
        self._limits = type(limits)(
            max_connections=max(limits.max_connections or 0, concurrency),
            max_keepalive_connections=max(limits.max_keepalive_connections or 0, concurrency),
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._clients: PerLoop[dict[str | None, openai.AsyncOpenAI]] = PerLoop(dict, close=_close_all)

    async def create(
        self, model: str, messages: list[dict[str, Any]], api_key: str | None, params: dict[str, Any]
    ) -> Any:
        """One chat completion: `model` without its provider prefix, `params` as litellm takes them."""
        clients = self._clients.get()
        client = clients.get(api_key)
        if client is None:
            client = clients[api_key] = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=self.api_base,
                max_retries=0,
                timeout=self.timeout_s,
                http_client=self._http_client(),
            )
        # `post` with the body as it is: what `chat.completions.create` sends, less its per-call walk over the
        # messages' TypedDicts (a quarter of the SDK's CPU per call). Parameters the SDK does not name (top_k,
        # guided_json, ...) go in the body as they are and `extra_body` is merged into it, `extra_headers` /
        # `headers` are sent as headers: what litellm does for an OpenAI-compatible server.
        body = dict(params)
        headers = {**(body.pop("headers", None) or {}), **(body.pop("extra_headers", None) or {})}
        body |= body.pop("extra_body", None) or {}
        body |= {"model": model, "messages": messages}
        options: Any = {"headers": headers} if headers else {}
        return await client.post("/chat/completions", body=body, cast_to=ChatCompletion, options=options)

    def _http_client(self) -> Any:
        """The SDK's HTTP client with connections kept for the concurrency bound; for a plain-http server, one
        that loads no CA certificates (50-70 ms per SDK client, i.e. per event loop, on a busy machine) and
        follows no redirect (so it never reaches a TLS server unverified)."""
        if (self.api_base or "").startswith("http://"):
            return openai.DefaultAsyncHttpxClient(limits=self._limits, verify=False, follow_redirects=False)
        return openai.DefaultAsyncHttpxClient(limits=self._limits)


async def _close_all(clients: dict[str | None, openai.AsyncOpenAI]) -> None:
    """Close a loop's SDK clients (their connections), before the loop ends."""
    await asyncio.gather(*(client.close() for client in clients.values()))
