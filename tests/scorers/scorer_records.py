"""Planted features for the scorer tests (imported by name: pytest puts this folder on sys.path via conftest).

Feature f fires on the word TOPICS[f] only. Its activating examples are sentences with that word (the
word's token carries the activation); its non-activating examples are sentences about the other topics
(all activations 0); a few weakly active examples (between the scorers' thresholds) mention no topic.
So the true description 'the word "<topic>"' fits the activating examples, and another feature's
description fits some non-activating ones: the shuffled control must score below chance or at it.
"""

from __future__ import annotations

import re

import numpy as np

from harness.activations.types import ActivatingExample
from harness.explain import FeatureRecord

TOPICS = ["dog", "river", "piano", "castle"]
SENTENCES = [
    "I keep thinking about the {k} these days.",
    "Have you ever seen a {k} up close?",
    "The report mentioned the {k} twice in the first paragraph.",
    "Nobody expected the {k} to matter so much.",
    "We talked about the {k} until the train arrived.",
    "Grandpa used to tell stories about the {k} after dinner.",
    "Is the {k} really that important? Yes, absolutely.",
    "The museum opened a new wing dedicated to the {k} last spring.",
    "She wrote a short poem about the {k} on the back of a ticket.",
    "Every morning the {k} looked a little different to him.",
    "They argued for an hour about whether the {k} was worth it.",
    "A photograph of the {k} hung above the fireplace.",
]
FILLER = "The meeting was moved to Thursday because of the weather."


def tokens_of(text: str) -> list[str]:
    """Word-level tokens with their leading space, like a BPE tokenizer's."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]", text)


def example(sample_id: int, text: str, fire_on: str | None, peak: float) -> ActivatingExample:
    """An example whose activation is `peak` on the token of the word `fire_on` (else all 0)."""
    tokens = tokens_of(text)
    values = np.zeros(len(tokens), dtype=np.float32)
    if fire_on is not None:
        values[[i for i, token in enumerate(tokens) if token.strip() == fire_on]] = peak
    elif peak:
        values[len(tokens) // 2] = peak
    position = int(np.argmax(np.abs(values)))
    return ActivatingExample(sample_id, text, tokens, values, float(values[position]), position)


def planted_record(feature: int, num_activating: int = 12, num_quiet: int = 12, num_weak: int = 3) -> FeatureRecord:
    """Feature `feature` fires on TOPICS[feature]; see the module docstring."""
    topic = TOPICS[feature % len(TOPICS)]
    others = [word for word in TOPICS if word != topic]
    top = [
        example(1000 * feature + i, SENTENCES[i % len(SENTENCES)].format(k=topic), topic, 10.0 - 0.4 * i)
        for i in range(num_activating)
    ]
    quiet = [
        example(1000 * feature + 500 + i, SENTENCES[(i + 5) % len(SENTENCES)].format(k=others[i % 3]), None, 0.0)
        for i in range(num_quiet)
    ]
    weak = [example(1000 * feature + 900 + i, f"{FILLER} ({i})", None, 1.0) for i in range(num_weak)]
    return FeatureRecord(feature=feature, top_examples=tuple(top), pool=tuple(quiet + weak))


def true_descriptions(features: list[int]) -> dict[int, str]:
    return {feature: f'the word "{TOPICS[feature % len(TOPICS)]}"' for feature in features}


def shuffled_descriptions(features: list[int]) -> dict[int, str]:
    """Each feature gets the next feature's description (a derangement)."""
    true = true_descriptions(features)
    return {feature: true[features[(i + 1) % len(features)]] for i, feature in enumerate(features)}
