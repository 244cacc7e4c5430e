"""Rate sequences for a concept with FADE's rating prompt: batches, parsing, and the retry of failed ones."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np

from harness.evaluate.fade._calls import FeatureCalls
from harness.evaluate.fade._metrics import VALID_RATINGS
from harness.evaluate.fade.prompts import rating_messages
from harness.llm import AnswerFormat, parse_ratings, ratings_format
from harness.llm.per_loop import gather_or_cancel

UNRATED = -1  # in rating arrays: asked, but no valid rating came back after the retries


def rating_answer(sequence_ids: list[int]) -> AnswerFormat:
    """A rating answer: every asked id rated 0, 1 or 2 (the prompt's own format, a JSON object keyed by id)."""
    return AnswerFormat(
        "fade_rating",
        ratings_format("fade_rating", sequence_ids, VALID_RATINGS),
        lambda text: parse_ratings(text, sequence_ids, allowed=VALID_RATINGS).ok,
    )


def rating_counts(ratings: np.ndarray) -> dict[str, int]:
    """How many of `ratings` are 0, 1, 2 and UNRATED, as rated_0, rated_1, rated_2, unrated."""
    counts = {f"rated_{rating}": int(np.count_nonzero(ratings == rating)) for rating in VALID_RATINGS}
    return counts | {"unrated": int(np.count_nonzero(ratings == UNRATED))}


async def rate_sequences(
    calls: FeatureCalls,
    concept: str,
    sequences: Mapping[int, str],
    *,
    batch_size: int,
    max_failed_retries: int,
) -> dict[int, int]:
    """Ratings (0, 1 or 2) by sequence id; ids without a valid rating after the retries are left out.

    The sequences go out in their given order, `batch_size` per call, all calls of a round at once
    (the client bounds concurrency). A sequence whose rating is missing or invalid is asked again in
    the next round, up to `max_failed_retries` more rounds (the reference's `retry_failed_samples`).

    Args:
        calls: the feature's LLM calls.
        concept: the description being scored.
        sequences: id -> text; the id is what the rater sees as `Sequence ID <id>`.
        batch_size: sequences per call (`rating_batch_size`).
        max_failed_retries: extra rounds for sequences without a valid rating.
    """
    judge = calls.backend.judge
    if judge is not None:
        # Deviation from the FADE reference: a registered rater (the embedding rater, R1) rates the texts
        # directly: no prompt, no batches, nothing to retry.
        ids = list(sequences)
        rated = await asyncio.to_thread(judge.rate, concept, [sequences[sequence_id] for sequence_id in ids])
        return dict(zip(ids, rated))
    ratings: dict[int, int] = {}
    pending = list(sequences.items())
    for _ in range(1 + max_failed_retries):
        if not pending:
            break
        batches = [pending[start : start + batch_size] for start in range(0, len(pending), batch_size)]
        # Deviation from the FADE reference: it rates at the provider's default temperature; ours at
        # fade.rater.temperature (default 0), so ratings are reproducible and cacheable. And the answer's
        # JSON schema goes with the prompt where fade.rater.structured_output says (E9).
        answers = await gather_or_cancel(
            *(
                calls.complete(
                    rating_messages(concept, batch),
                    answer_format=rating_answer([sequence_id for sequence_id, _ in batch]),
                )
                for batch in batches
            )
        )
        for batch, answer in zip(batches, answers):
            if answer is None:
                continue
            # Deviation from the FADE reference: a batch whose answer holds one invalid value loses every
            # rating there (its pydantic check rejects the whole dict) and ratings for ids nobody asked
            # about are kept; ours keeps each valid rating of an asked id and retries only the rest.
            parsed = parse_ratings(answer.text, [sequence_id for sequence_id, _ in batch], allowed=VALID_RATINGS)
            ratings.update(parsed.ratings)
        pending = [(sequence_id, text) for sequence_id, text in pending if sequence_id not in ratings]
    return ratings
