"""The loopback server's scripted responders (registered in harness.registry.RESPONDERS): answers written
from the wording of the harness's prompts, as a perfect reader of the description would answer them.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from typing import Any

RATING_MARKER = "rate each one according to how much the concept is expressed"
GENERATION_MARKER = "generate sequences"
INTRUDER_MARKER = "Find the intruder."
OUTPUT_DETECTION_MARKER = "Pick the set of completions that matches the explanation."

_STOPWORDS = frozenset(
    "the and for with that this from are was were has have had its not but any all can into onto over "
    "under about than then them they their there these those such some more most very also only other "
    "which what when where who whom whose how why use used using word words token tokens text texts "
    "concept related relating refers reference references mention mentions mentioning".split()
)
_QUOTED = re.compile(r'"([^"]+)"|(?<![\w])\'([^\']+)\'(?![\w])')
_HIGHLIGHT = re.compile(r"<<(.+?)>>")
_SEQUENCE_SPLIT = re.compile(r"(?:^|\n)Sequence ID (\d+): ")
_DESCRIPTION_PREFIX = "Description: "
_EXAMPLE_LINE = re.compile(r"^Example (\d+): (.*)$", re.MULTILINE)
_TOKEN_LINE = re.compile(r"^(\d+)\t(.*)$", re.MULTILINE)
DELPHI_PREFIX = "Latent explanation: "  # the user prompt of the delphi convention (delphi's GENERATION_PROMPT)
_DELPHI_EXAMPLE = re.compile(r"(?:^|\n)Example \d+: ")
SAEBENCH_PREFIX = "Here is the explanation: this neuron fires on "  # the saebench scorer's user prompt
_SAEBENCH_EXAMPLE = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)
# the output-centric explainers' token lists (harness.explain._output_evidence.PROMOTED_LABEL): a Python list
_PROMOTED_LINE = re.compile(r"^Promoted tokens: (\[.*\])$", re.MULTILINE)
_SET_SPLIT = re.compile(r"(?:^|\n)# Set \d+\n")


def concept_keywords(concept: str) -> list[str]:
    """Quoted words/phrases of a concept if it has any, else its words of >= 3 letters minus stopwords."""
    quoted = [(double or single).strip() for double, single in _QUOTED.findall(concept)]
    quoted = [phrase for phrase in quoted if phrase]
    if quoted:
        return quoted
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", concept)
    return [word for word in words if len(word) >= 3 and word.lower() not in _STOPWORDS]


def contains_keyword(text: str, keywords: list[str]) -> bool:
    """Whole-word, case-insensitive match of any keyword."""
    return any(re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE) for keyword in keywords)


def _system_and_user(messages: list[dict[str, Any]]) -> tuple[str, str]:
    def text_of(role: str) -> str:
        return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict) and m.get("role") == role)

    return text_of("system"), text_of("user")


_SENTENCE_TEMPLATES = (
    "I keep thinking about {k} these days.",
    "Have you ever seen {k} up close?",
    "The report mentioned {k} twice in the first paragraph.",
    "{K} was the only thing on her mind that morning.",
    "Nobody expected {k} to matter so much.",
    "We talked about {k} until the train arrived.",
    "A short note on {k}: it is more common than you think.",
    "Grandpa used to tell stories about {k}.",
    "Is {k} really that important? Yes, absolutely.",
    "The museum opened a new wing dedicated to {k}.",
)


class FadeResponder:
    """Answers FADE's rating and generation prompts, the other scorers' prompts and explainer prompts by
    keyword rules, as a perfect reader of the description.

    Rating (system prompt has RATING_MARKER): 2 for a sequence containing a concept keyword, else 0,
    as a JSON dict. Generation (GENERATION_MARKER): ten sentences containing the keywords, as a list.
    Scorers (user prompt opens with "Description: "): see `judge`; the intruder scorer (INTRUDER_MARKER):
    see `intruder`; the output-detection scorer (OUTPUT_DETECTION_MARKER): see `output_detection`; the delphi
    convention's detection and fuzzing (last user message opens with DELPHI_PREFIX): see `delphi`; the saebench scorer (SAEBENCH_PREFIX): see `saebench`.
    Explainer (highlighted `<<tok>>` tokens): `the token "tok"` for the most frequent highlighted token; an
    output-centric explainer's prompt without highlights ("Promoted tokens: [...]" lines): `the token "tok"`
    for the first promoted token, as a real explainer echoes the strongest token.
    """

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        system, user = _system_and_user(messages)
        if RATING_MARKER in system:
            return self.rate(user)
        if GENERATION_MARKER in system:
            return self.generate(user)
        if INTRUDER_MARKER in system:
            return self.intruder(user)
        if OUTPUT_DETECTION_MARKER in system:
            return self.output_detection(user)
        last = _system_and_user(messages[-1:])[1]
        if last.startswith(DELPHI_PREFIX):
            return self.delphi(system, last)
        if last.startswith(SAEBENCH_PREFIX):
            return self.saebench(last)
        judged = self.judge(system, user)
        if judged is not None:
            return json.dumps(judged)
        highlighted = _HIGHLIGHT.findall(f"{system}\n{user}")
        if highlighted:
            token = Counter(token.strip() for token in highlighted).most_common(1)[0][0]
            return f'the token "{token}"'
        promoted = _first_promoted(user)
        if promoted is not None:
            return f'the token "{promoted}"'
        return "This scripted server answers FADE rating/generation prompts and explainer prompts."

    @staticmethod
    def rate(user: str) -> str:
        parts = _SEQUENCE_SPLIT.split(user)
        keywords = concept_keywords(_concept_of(parts[0]))
        ratings = {
            sequence_id: 2 if contains_keyword(text, keywords) else 0
            for sequence_id, text in zip(parts[1::2], parts[2::2])
        }
        return json.dumps(ratings)

    @staticmethod
    def judge(system: str, user: str) -> dict[str, int] | None:
        """The detection, fuzzing and simulation scorers' answers; None for any other prompt.

        Detection ("Example N: text" lines): 1 for an example containing a keyword. Fuzzing (the same, with
        a system prompt about marked spans): 1 when a `<<marked>>` span contains a keyword. Simulation
        ("N<TAB>token" lines after "Tokens:"): 10 on a token containing a keyword. Otherwise 0.
        """
        if not user.startswith(_DESCRIPTION_PREFIX):
            return None
        description, _, body = user.partition("\n")
        keywords = concept_keywords(description.removeprefix(_DESCRIPTION_PREFIX))
        if "\nTokens:\n" in user:
            return {
                number: 10 if contains_keyword(token, keywords) else 0 for number, token in _TOKEN_LINE.findall(body)
            }
        examples = _EXAMPLE_LINE.findall(body)
        if not examples:
            return None
        if "marked" in system:
            return {
                number: int(any(contains_keyword(span, keywords) for span in _HIGHLIGHT.findall(text)))
                for number, text in examples
            }
        return {number: int(contains_keyword(text, keywords)) for number, text in examples}

    @staticmethod
    def delphi(system: str, user: str) -> str:
        """The delphi convention's answer, a Python list in example order: detection 1 for an example containing
        a keyword, fuzzing (system prompt about << and >>) 1 when a marked span holds one. Examples are read
        as written, line breaks included, up to the next "Example N: "."""
        explanation, _, body = user.partition("\n")
        keywords = concept_keywords(explanation.removeprefix(DELPHI_PREFIX))
        examples = _DELPHI_EXAMPLE.split(body.partition("Text examples:")[2].strip("\n"))[1:]
        if "<< and >>" in system:
            answers = [
                int(any(contains_keyword(span, keywords) for span in _HIGHLIGHT.findall(text))) for text in examples
            ]
        else:
            answers = [int(contains_keyword(text, keywords)) for text in examples]
        return json.dumps(answers)

    @staticmethod
    def saebench(user: str) -> str:
        """The saebench scorer's answer: the numbers of the examples containing a keyword, comma-separated, or
        "None"."""
        explanation, _, body = user.partition("\n")
        keywords = concept_keywords(explanation.removeprefix(SAEBENCH_PREFIX).rstrip("."))
        listed = [number for number, text in _SAEBENCH_EXAMPLE.findall(body) if contains_keyword(text, keywords)]
        return ", ".join(listed) or "None"

    @staticmethod
    def intruder(user: str) -> str:
        """The intruder scorer's answer, {"intruder": n}: the "Example n: text" that shares the least with the
        others, counted in its `<<marked>>` spans when any example has marks, else in its words of >= 3
        letters minus stopwords; ties go to the first."""
        examples = [text for _, text in _EXAMPLE_LINE.findall(user)]
        marked = any(_HIGHLIGHT.search(text) for text in examples)

        def traits(text: str) -> set[str]:
            if marked:
                return {span.strip().lower() for span in _HIGHLIGHT.findall(text)}
            words = re.findall(r"[A-Za-z][A-Za-z'-]*", text)
            return {word.lower() for word in words if len(word) >= 3 and word.lower() not in _STOPWORDS}

        sets = [traits(text) for text in examples]
        shared = [sum(len(mine & theirs) for j, theirs in enumerate(sets) if j != i) for i, mine in enumerate(sets)]
        return json.dumps({"intruder": min(range(len(shared)), key=shared.__getitem__, default=0) + 1})

    @staticmethod
    def output_detection(user: str) -> str:
        """The output-detection scorer's answer, {"set": n}: the "# Set n" block in which the description's
        keywords occur most often (whole words, any case), as a judge reading for the description's words
        would pick; ties go to the first."""
        description, _, body = user.partition("\n")
        keywords = concept_keywords(description.removeprefix(_DESCRIPTION_PREFIX))
        blocks = _SET_SPLIT.split(body)[1:]
        counts = [
            sum(len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", block, re.IGNORECASE)) for word in keywords)
            for block in blocks
        ]
        return json.dumps({"set": max(range(len(counts)), key=counts.__getitem__, default=0) + 1})

    @staticmethod
    def generate(user: str) -> str:
        keywords = concept_keywords(_concept_of(user)) or ["it"]
        sentences = []
        for index, template in enumerate(_SENTENCE_TEMPLATES):
            keyword = keywords[index % len(keywords)]
            sentences.append(template.format(k=keyword, K=keyword[:1].upper() + keyword[1:]))
        return json.dumps(sentences)


def _first_promoted(user: str) -> str | None:
    """The first token of the first "Promoted tokens: [...]" list, without surrounding whitespace (kept when it
    is only whitespace); None when there is none."""
    for line in _PROMOTED_LINE.findall(user):
        try:
            tokens = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        if isinstance(tokens, list) and tokens and isinstance(tokens[0], str):
            return tokens[0].strip() or tokens[0]
    return None


def _concept_of(user: str) -> str:
    head = user.split("Concept:", 1)[1] if "Concept:" in user else user
    return head.split("\n", 1)[0].strip()


class EchoResponder:
    """Answers with the last user message (a connectivity check)."""

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        return _system_and_user(messages[-1:])[1]
