"""The names of FADE's scores and the reasons a score is undefined: one definition each.

Both are stored as plain strings in result files (scores.csv, summary.json, the scorers' tables, the tracked
runs' per_feature.json) and shown on the leaderboard, so their values never change. Standard library only:
the config and the leaderboard import this module.
"""

from enum import StrEnum

FADE_SCORES = ("clarity", "responsiveness", "purity", "faithfulness")  # in the order shown
CLARITY_ABOVE_FLOOR = "clarity_above_floor"  # Clarity minus its floor (docs/clarity-floor.md), shown as a score


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
    # The output-centric scorers (docs/scorers/output-centric.md)
    NO_OUTPUT_DIRECTION = "no_output_direction"  # the site's tensor reaches the residual stream by no linear map
    KL_TARGET_UNREACHABLE = "kl_target_unreachable"  # no clamp value within the search's bound moves the output so far
    TOO_FEW_FEATURES = "too_few_features"  # fewer than 3 features to draw the other text sets from
    NO_STEERING_SCALE = "no_steering_scale"  # no feature is active at the steering prompt: nothing to scale by

    # Any score: LLM calls it needed failed for good (after retries), so it is no result about the data; a
    # rerun computes it again (docs/reliability.md).
    LLM_FAILED = "llm_failed"


class Undefined(StrEnum):
    """What an undefined score means in the aggregate (harness.evaluate.aggregate): whose fault it is."""

    # The description's fault: it did not capture the feature. The score counts as 0, so a variant is not
    # rewarded for descriptions FADE could not score (e.g. its gate: Faithfulness below Clarity's threshold).
    COUNTS_ZERO = "counts_zero"
    # Not the description's: the feature (dead, too few examples), the data or the setup (a score turned off, a
    # rater that cannot do it). The feature is left out of the aggregate, for every variant compared.
    LEAVES_FEATURE_OUT = "leaves_feature_out"


# Every reason, once. A test checks that no Reason is missing; a reason read from a run that is not a Reason
# (a plugin's, or a newer version's) leaves the feature out (`undefined_policy`), so nothing is counted 0 unread.
UNDEFINED_POLICY: dict[Reason, Undefined] = {
    Reason.NO_DESCRIPTION: Undefined.COUNTS_ZERO,  # the explainer wrote nothing
    # FADE: "positive"/"negative" samples of a Gini/AP (general form of the two below)
    Reason.NO_POSITIVE_SAMPLES: Undefined.COUNTS_ZERO,
    Reason.NO_NEGATIVE_SAMPLES: Undefined.LEAVES_FEATURE_OUT,
    Reason.NO_SYNTHETIC_SAMPLES: Undefined.COUNTS_ZERO,  # nothing could be written for the description
    Reason.NO_NATURAL_SAMPLES: Undefined.LEAVES_FEATURE_OUT,  # the corpus gave the feature no samples
    Reason.NO_RATED_2_SAMPLES: Undefined.COUNTS_ZERO,  # none of the feature's samples shows the described concept
    Reason.NO_RATED_0_SAMPLES: Undefined.COUNTS_ZERO,  # every sample shows it: the description fits anything
    Reason.NO_BASELINE_RATINGS: Undefined.LEAVES_FEATURE_OUT,  # the unsteered continuations were not rated
    Reason.BASELINE_ALL_RATED_2: Undefined.COUNTS_ZERO,  # unsteered text already shows it: nothing to steer
    Reason.BELOW_GINI_THRESHOLD: Undefined.COUNTS_ZERO,  # FADE's gate: Clarity or Responsiveness too low
    Reason.GATE_SCORE_UNDEFINED: Undefined.COUNTS_ZERO,  # the gate's scores are undefined (theirs decides)
    Reason.FAITHFULNESS_DISABLED: Undefined.LEAVES_FEATURE_OUT,  # turned off (default weights leave it out)
    # The other scorers
    Reason.NO_ACTIVATING_EXAMPLES: Undefined.LEAVES_FEATURE_OUT,  # a dead feature
    Reason.NO_NON_ACTIVATING_EXAMPLES: Undefined.LEAVES_FEATURE_OUT,  # a feature that fires everywhere
    Reason.TOO_FEW_ACTIVATING_EXAMPLES: Undefined.LEAVES_FEATURE_OUT,
    Reason.NO_VALID_ANSWERS: Undefined.LEAVES_FEATURE_OUT,  # the rater answered nothing usable
    Reason.SINGLE_CLASS_ANSWERED: Undefined.LEAVES_FEATURE_OUT,  # the judged examples were all of one class
    Reason.NO_SCORES: Undefined.LEAVES_FEATURE_OUT,  # the backend gave no log-probabilities
    Reason.CONSTANT_ACTIVATIONS: Undefined.LEAVES_FEATURE_OUT,
    Reason.RATER_CANNOT_SIMULATE: Undefined.LEAVES_FEATURE_OUT,  # the setup cannot measure it
    Reason.RATER_SEES_NO_HIGHLIGHTS: Undefined.LEAVES_FEATURE_OUT,
    Reason.RATER_READS_NO_PROMPT: Undefined.LEAVES_FEATURE_OUT,
    Reason.NO_OUTPUT_DIRECTION: Undefined.LEAVES_FEATURE_OUT,  # the site, not the description
    Reason.KL_TARGET_UNREACHABLE: Undefined.LEAVES_FEATURE_OUT,  # the feature barely moves the output
    Reason.TOO_FEW_FEATURES: Undefined.LEAVES_FEATURE_OUT,  # the run scored too few features
    Reason.NO_STEERING_SCALE: Undefined.LEAVES_FEATURE_OUT,
    Reason.LLM_FAILED: Undefined.LEAVES_FEATURE_OUT,  # no result at all: the feature is compared on nothing
}


def undefined_policy(reason: str | None) -> Undefined:
    """What an undefined score with this stored reason means in the aggregate; unknown reasons leave it out."""
    try:
        return UNDEFINED_POLICY[Reason(reason or "")]
    except (ValueError, KeyError):
        return Undefined.LEAVES_FEATURE_OUT
