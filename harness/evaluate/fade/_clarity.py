"""Clarity: can the feature tell text written from the description apart from natural text?"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from harness.config import FadeConfig
from harness.evaluate.fade._calls import FeatureCalls
from harness.evaluate.fade._metrics import clarity
from harness.evaluate.fade.prompts import generation_messages
from harness.evaluate.scores import Score
from harness.llm import AnswerFormat, parse_string_list, string_list_format
from harness.llm.per_loop import gather_or_cancel


@dataclass(frozen=True)
class ClarityOutcome:
    """The score, the de-duplicated synthetic samples with their activations, and the usable answers."""

    score: Score
    synthetic_texts: list[str]
    synthetic_activations: np.ndarray
    usable_answers: int


def _is_clean_string_list(text: str) -> bool:
    parsed = parse_string_list(text)
    return parsed.ok and bool(parsed.items) and not parsed.dropped


def generation_answer(fade: FadeConfig) -> AnswerFormat:
    """The generation answer's format and the check that an answer is a clean list of strings."""
    # Deviation from the FADE reference: the list's schema may bound how many samples and how long (E10).
    schema = string_list_format("fade_generation", fade.generation_max_samples, fade.generation_max_chars)
    return AnswerFormat("fade_generation", schema, _is_clean_string_list)


async def generate_synthetic_texts(calls: FeatureCalls, concept: str, fade: FadeConfig) -> tuple[list[str], int]:
    """The de-duplicated union of `clarity_llm_calls` generation answers, and how many answers gave strings.

    Each call is its own request to the generator (fade.generator, else fade.rater) with `seed=i` for call
    i > 0, as the explainer's candidates. Providers that reject `seed` need `drop_params: true` in its
    `extra_params`.
    """
    # Deviation from the FADE reference: its calls share one cache-less client at the provider's default
    # temperature; ours run at fade.generation_temperature, each with its own seed, so each is a separate
    # request and cache entry (a cached run gives the same synthetic samples again). With structured output
    # they carry the list's JSON schema and ask for the list inside its object (E9).
    answers = await gather_or_cancel(
        *(
            calls.write(
                generation_messages(concept, in_json_object=calls.writer_sends_response_format),
                answer_format=generation_answer(fade),
                temperature=fade.generation_temperature,
                **({"seed": index} if index else {}),
            )
            for index in range(fade.clarity_llm_calls)
        )
    )
    # Deviation from the FADE reference: it drops an answer that is not a clean JSON list of strings; we
    # also keep the complete strings of a cut-off or loosely formatted list (parse_string_list salvages
    # them) and leave out empty strings, which carry no concept and give no activation.
    lists = [parse_string_list(answer.text).items for answer in answers if answer is not None]
    usable = [items for items in lists if items]
    return list(dict.fromkeys(itertools.chain.from_iterable(usable))), len(usable)


async def score_clarity(
    calls: FeatureCalls,
    concept: str,
    natural_activations: np.ndarray,
    activations_of: Callable[[list[str]], Awaitable[np.ndarray]],
    fade: FadeConfig,
) -> ClarityOutcome:
    """Generate synthetic samples for `concept`, read the feature on them, and score Clarity.

    Args:
        calls: the feature's LLM calls.
        concept: the description.
        natural_activations: the feature's per-sample activation on every natural sample.
        activations_of: the feature's per-sample activations on new texts (runs the subject model).
        fade: FADE settings.
    """
    texts, usable_answers = await generate_synthetic_texts(calls, concept, fade)
    synthetic = await activations_of(texts) if texts else np.zeros(0, dtype=np.float32)
    return ClarityOutcome(
        score=clarity(synthetic, natural_activations),
        synthetic_texts=texts,
        synthetic_activations=synthetic,
        usable_answers=usable_answers,
    )
