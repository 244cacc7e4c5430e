"""Which rendering of line breaks a real instruction-tuned judge reads better in our detection prompt (issue #26).

Judge: the embedded SmolLM2-135M-Instruct (`local/smollm2-135m`, greedy, answers constrained to our JSON
schema, log-probabilities on). Features: one per keyword, each with 5 activating texts whose keyword follows
a line break and 5 non-activating texts with as many line breaks and no keyword, described as 'the word
"<keyword>"'. The same items go through our detection scorer's prompt, batches and metrics twice: written
as our convention writes them (line breaks as the two characters `\\n`) and as written (raw line breaks).

    python benchmarks/measure_line_breaks.py [--model local/smollm2-135m] [--api-base URL]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile

import numpy as np

from harness.config import LLMConfig, ScorersConfig
from harness.evaluate.scorers import SCORERS, JudgedItem, visible_text
from harness.llm import LLMClient

KEYWORDS = ["dog", "river", "piano", "castle", "coffee", "winter", "doctor", "garden", "rocket", "violin"]
ACTIVATING = [
    "Notes from the trip:\n{k} was the first thing we saw.",
    "Item 4\n{k} and two chairs\nend of list",
    "Dear Sam,\n{k} is all she talks about lately.",
    "Chapter 2\n\n{k} stories were told every night.",
    "TODO:\n- {k}\n- call the bank",
]
QUIET = [
    "Notes from the trip:\nthe bus was late again.",
    "Item 4\nthree lamps and a table\nend of list",
    "Dear Sam,\nthe weather has been lovely lately.",
    "Chapter 2\n\nThe house was quiet every night.",
    "TODO:\n- pay rent\n- call the bank",
]


def tokens_of(text: str) -> list[str]:
    return re.findall(r"\n|[^\S\n]*[\w']+|[^\S\n]*[^\w\s]", text)


def items(rendering: str, keyword: str) -> list[JudgedItem]:
    def show(text: str) -> str:
        return visible_text(tokens_of(text)) if rendering == "escaped" else text

    texts = [(template.format(k=keyword), True) for template in ACTIVATING] + [(text, False) for text in QUIET]
    return [JudgedItem(show(text), label) for text, label in texts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m", help="the judge (a litellm model string)")
    parser.add_argument("--api-base", default=None, help="its server, for an OpenAI-compatible one")
    args = parser.parse_args()
    config = ScorersConfig(enabled=["detection"])
    settings = config.detection.model_copy(update={"logprobs": "on"})
    scorer = SCORERS.get("detection")()
    with tempfile.TemporaryDirectory() as folder:
        client = LLMClient(
            LLMConfig(model=args.model, api_base=args.api_base, cache_path=f"{folder}/cache.sqlite", max_tokens=64),
            progress=False,
        )
        print("| rendering | balanced accuracy (mean over features) | AUROC from P(1) (mean) | unanswered |")
        print("| --- | --- | --- | --- |")
        for rendering in ("escaped", "raw"):
            rng = np.random.default_rng(0)
            prepared = {}
            for feature, keyword in enumerate(KEYWORDS):
                shown = items(rendering, keyword)
                order = rng.permutation(len(shown))
                batch = [shown[i] for i in order]
                prepared[feature] = (f'the word "{keyword}"', [batch[:5], batch[5:]])
            rows = scorer.evaluate(prepared, client, settings, progress=False)
            accuracy = [row.score.value for row in rows.values() if row.score.value is not None]
            auroc = [row.extras["auroc"] for row in rows.values() if row.extras.get("auroc") is not None]
            unanswered = sum(int(row.extras["unanswered"] or 0) for row in rows.values())
            print(
                f"| {rendering} | {np.mean(accuracy):.3f} ({len(accuracy)} defined) "
                f"| {np.mean(auroc) if auroc else float('nan'):.3f} ({len(auroc)}) | {unanswered} |"
            )
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
