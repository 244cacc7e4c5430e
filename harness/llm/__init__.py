"""The LLM layer: every LLM call of the harness goes through LLMClient (litellm underneath).

Swap backends by changing `llm.model` (a litellm model string); `local/smollm2-135m` runs offline.
The scripted OpenAI-compatible server of tests and dry runs lives in `harness.testing` (test doubles, no
part of any API).
"""

import os

# litellm fetches its price map from the network at import unless told otherwise; we work offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from harness.llm._cache import CachedResponse, ResponseCache, cache_key
from harness.llm._local_provider import LocalChatProvider, register_local_provider
from harness.llm.client import LLMClient
from harness.llm.ledger import UsageLedger
from harness.llm.parsing import ParsedList, ParsedRatings, parse_ratings, parse_string_list
from harness.llm.schemas import (
    ANSWER_KINDS,
    AnswerFormat,
    choice_format,
    description_format,
    ratings_format,
    string_list_format,
)
from harness.llm.types import Completion, TokenLogprobs, Usage, parse_metrics

__all__ = [
    "ANSWER_KINDS",
    "AnswerFormat",
    "CachedResponse",
    "Completion",
    "LLMClient",
    "LocalChatProvider",
    "ParsedList",
    "ParsedRatings",
    "ResponseCache",
    "TokenLogprobs",
    "Usage",
    "UsageLedger",
    "cache_key",
    "choice_format",
    "description_format",
    "parse_metrics",
    "parse_ratings",
    "parse_string_list",
    "ratings_format",
    "register_local_provider",
    "string_list_format",
]
