"""Token log-probabilities in OpenAI's wire shape (`choices[i].logprobs.content`) and back.

The harness keeps them as TokenLogprobs: per generated token, its text and its likeliest alternatives.
The client reads them from any backend's response; the local provider and the loopback server write them.
"""

from __future__ import annotations

from typing import Any

from harness.llm.types import TokenLogprobs


def _field(item: Any, name: str) -> Any:
    """An attribute of a litellm object, or the key of the plain dict some providers hand back instead."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def token_logprobs(response: Any) -> tuple[TokenLogprobs, ...] | None:
    """The first choice's per-token log-probabilities (OpenAI's `logprobs.content`), or None when absent.

    Each token's alternatives are its `top_logprobs`, plus the token itself when the backend left it out
    (a sampled token outside the top k), so a reader always finds the written token among them.
    """
    choice = response.choices[0]
    content = _field(_field(choice, "logprobs") or {}, "content")
    if not content:
        return None
    tokens = []
    for item in content:
        token, logprob = _field(item, "token"), _field(item, "logprob")
        if not isinstance(token, str) or logprob is None:
            return None  # not the OpenAI shape: better none than misread
        alternatives = {
            _field(top, "token"): float(_field(top, "logprob"))
            for top in _field(item, "top_logprobs") or ()
            if isinstance(_field(top, "token"), str) and _field(top, "logprob") is not None
        }
        alternatives.setdefault(token, float(logprob))
        tokens.append((token, alternatives))
    return tuple(tokens)


def logprobs_content(tokens: tuple[TokenLogprobs, ...], top: int) -> list[dict[str, Any]]:
    """OpenAI's `logprobs.content`: each token's own log-probability and its `top` likeliest alternatives."""
    content = []
    for token, alternatives in tokens:
        ranked = sorted(alternatives.items(), key=lambda item: -item[1])[:top]
        content.append(
            {
                "token": token,
                "logprob": alternatives.get(token, 0.0),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": name, "logprob": logprob, "bytes": list(name.encode())} for name, logprob in ranked
                ],
            }
        )
    return content
