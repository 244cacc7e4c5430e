"""The names of FADE's scores and the reasons a score is undefined: one definition each.

Both are stored as plain strings in result files (scores.csv, summary.json, the scorers' tables, the tracked
runs' per_feature.json) and shown on the leaderboard, so their values never change. Standard library only:
the config and the leaderboard import this module.
"""

from enum import StrEnum

FADE_SCORES = ("clarity", "responsiveness", "purity", "faithfulness")  # in the order shown


class Reason(StrEnum):
    """Why a score is undefined for a feature (FADE's scores and the other scorers'). Stored as its value."""

    # Either: the feature's row has no description.
    NO_DESCRIPTION = "no_description"

    # FADE
    NO_POSITIVE_SAMPLES = "no_positive_samples"
    NO_NEGATIVE_SAMPLES = "no_negative_samples"
    NO_SYNTHETIC_SAMPLES = "no_synthetic_samples"
    NO_NATURAL_SAMPLES = "no_natural_samples"
    NO_RATED_2_SAMPLES = "no_rated_2_samples"
    NO_RATED_0_SAMPLES = "no_rated_0_samples"
    NO_BASELINE_RATINGS = "no_baseline_ratings"
    BASELINE_ALL_RATED_2 = "baseline_all_rated_2"
    BELOW_GINI_THRESHOLD = "below_gini_threshold"
    GATE_SCORE_UNDEFINED = "clarity_or_responsiveness_undefined"
    FAITHFULNESS_DISABLED = "faithfulness_disabled"

    # The other scorers (harness.evaluate.scorers)
    NO_ACTIVATING_EXAMPLES = "no_activating_examples"
    NO_NON_ACTIVATING_EXAMPLES = "no_non_activating_examples"
    TOO_FEW_ACTIVATING_EXAMPLES = "too_few_activating_examples"
    NO_VALID_ANSWERS = "no_valid_answers"
    SINGLE_CLASS_ANSWERED = "single_class_answered"
    NO_SCORES = "no_scores"
    CONSTANT_ACTIVATIONS = "constant_activations"
    RATER_CANNOT_SIMULATE = "rater_predicts_no_token_activations"
    RATER_SEES_NO_HIGHLIGHTS = "rater_sees_no_highlights"
    RATER_READS_NO_PROMPT = "rater_reads_no_prompt"  # the delphi convention needs a rater that reads its prompts
