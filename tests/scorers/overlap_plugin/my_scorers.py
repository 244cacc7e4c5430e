import re

from harness.config import ScorerExamplesConfig
from harness.evaluate.scorers import FeatureScore, Scorer, scoring_examples, similarity_auroc
from harness.score_names import Reason


def words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


class OverlapScorer(Scorer):
    needs_llm = False
    extra_columns = ("examples",)
    settings_model = ScorerExamplesConfig  # scorers.settings.overlap in a config

    def prepare(self, record, description, settings):
        labelled = scoring_examples(record, settings)
        return (words(description), labelled) if labelled else Reason.NO_ACTIVATING_EXAMPLES

    def evaluate(self, prepared, client, settings, *, progress):
        rows = {}
        for feature, (described, labelled) in prepared.items():
            counts = [len(described & words(item.example.text)) for item in labelled]
            score = similarity_auroc([item.activating for item in labelled], counts)
            rows[feature] = FeatureScore(feature, score, {"examples": len(labelled)})
        return rows
