"""A scripted rater for the scorers' prompts: it answers by keyword rules, as a perfect reader of the description.

- detection: 1 for an example that contains a keyword of the description, else 0;
- fuzzing: 1 when a highlighted span contains a keyword, else 0;
- simulation: 10 on tokens that contain a keyword, else 0.
Keywords are the description's quoted words (harness.llm.loopback.concept_keywords).
"""

from __future__ import annotations

import json
import re
from typing import Any

from harness.evaluate.scorers.prompts import system_prompt
from harness.llm.loopback import concept_keywords, contains_keyword

_EXAMPLE = re.compile(r"^Example (\d+): (.*)$", re.MULTILINE)
_TOKEN = re.compile(r"^(\d+)\t(.*)$", re.MULTILINE)
_HIGHLIGHT = re.compile(r"<<(.+?)>>")


class KeywordRater:
    """Callable messages -> answer text for the LoopbackServer.

    Args:
        chatty: wrap every answer in chatter and a code fence, as chat models often do.
    """

    def __init__(self, chatty: bool = False) -> None:
        self.chatty = chatty
        self.prompts = {name: system_prompt(name) for name in ("detection", "fuzzing", "simulation")}

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        description = user.split("\n", 1)[0].removeprefix("Description: ")
        keywords = concept_keywords(description)
        if system == self.prompts["detection"]:
            answer = {number: int(contains_keyword(text, keywords)) for number, text in _EXAMPLE.findall(user)}
        elif system == self.prompts["fuzzing"]:
            answer = {
                number: int(any(contains_keyword(span, keywords) for span in _HIGHLIGHT.findall(text)))
                for number, text in _EXAMPLE.findall(user)
            }
        elif system == self.prompts["simulation"]:
            answer = {number: 10 if contains_keyword(token, keywords) else 0 for number, token in _TOKEN.findall(user)}
        else:
            return "I only rate the scorers' prompts."
        text = json.dumps(answer)
        return f"Sure! Here is my answer:\n```json\n{text}\n```\nLet me know if you need more." if self.chatty else text
