"""A scripted rater for the scorers' prompts only: the loopback server's keyword rules (FadeResponder.judge),
as a perfect reader of the description:

- detection: 1 for an example that contains a keyword of the description, else 0;
- fuzzing: 1 when a highlighted span contains a keyword, else 0;
- simulation: 10 on tokens that contain a keyword, else 0;
- intruder (no description): the example whose marked spans the others share least (FadeResponder.intruder).
Keywords are the description's quoted words (harness.testing.responders.concept_keywords).

A hedged rater writes the same value for every item (1, or 5 in simulation), so its written answers say
nothing; only its log-probabilities do: P(1) = 0.9 on a keyword item and 0.6 elsewhere, and in simulation
P(10) = 0.8, P(5) = 0.2 on a keyword token, P(5) = 0.2, P(0) = 0.8 elsewhere.
"""

from __future__ import annotations

import json
import math
from typing import Any

from harness.evaluate.scorers.prompts import system_prompt
from harness.testing.loopback import ScriptedAnswer
from harness.testing.responders import FadeResponder


class KeywordRater:
    """Callable messages -> answer text for the LoopbackServer.

    Args:
        chatty: wrap every answer in chatter and a code fence, as chat models often do.
        hedged: answer as the hedged rater of the module docstring, with scripted log-probabilities.
    """

    def __init__(self, chatty: bool = False, hedged: bool = False) -> None:
        self.chatty = chatty
        self.hedged = hedged
        self.prompts = {name: system_prompt(name) for name in ("detection", "fuzzing", "simulation", "intruder")}

    def __call__(self, messages: list[dict[str, Any]]) -> str | ScriptedAnswer:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        if system not in self.prompts.values():
            return "I only rate the scorers' prompts."
        if system == self.prompts["intruder"]:  # hedging has no meaning for a choice: written as it is
            text = FadeResponder.intruder(user)
        else:
            answer = FadeResponder.judge(system, user)
            if self.hedged:
                return hedged_answer(answer, simulation=system == self.prompts["simulation"])
            text = json.dumps(answer)
        return f"Sure! Here is my answer:\n```json\n{text}\n```\nLet me know if you need more." if self.chatty else text


def hedged_answer(truth: dict[str, int], simulation: bool) -> ScriptedAnswer:
    """The same written value for every id; the truth only in each value token's alternatives."""
    if simulation:
        written, sure, unsure = "5", {"10": 0.8, "5": 0.2}, {"5": 0.2, "0": 0.8}
    else:
        written, sure, unsure = "1", {"1": 0.9, "0": 0.1}, {"1": 0.6, "0": 0.4}
    tokens = []
    for index, (number, value) in enumerate(truth.items()):
        tokens.append((("{" if index == 0 else ", ") + f'"{number}": ', {}))
        tokens.append((written, {token: math.log(p) for token, p in (sure if value else unsure).items()}))
    tokens.append(("}", {}))
    return ScriptedAnswer(tuple(tokens))
