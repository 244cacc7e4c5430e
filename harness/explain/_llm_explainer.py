"""`llm` explainer: a prompt of selected, displayed examples per feature, answered by an LLM.

Every feature's prompts go to the LLM layer in one concurrent batch; its cache answers repeated runs.
Answers are untrusted text: parsed as data, stripped, never evaluated.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.config import ExplainConfig, identity_payload
from harness.errors import ConfigError, LLMError
from harness.explain._display import DISPLAY_INSTRUCTIONS, render_example
from harness.explain._explainer import Explainer, llm_settings
from harness.explain._output_evidence import output_settings, render_output_evidence
from harness.explain._records import FeatureRecord
from harness.explain._selection import select_examples
from harness.explain._table import Description, llm_failure
from harness.explain._templates import PromptTemplate, load_template
from harness.files import identity_hash
from harness.llm.schemas import DESCRIPTION_KEY, DESCRIPTION_MAX_LENGTH, AnswerFormat, description_format
from harness.registry import EXPLAINERS

if TYPE_CHECKING:
    from harness.llm.client import LLMClient

_ANSWER_MARKER = re.compile(r"\[?\b(?:description|explanation)\]?[ \t]*:", re.IGNORECASE)
# The schema's object, complete or cut off by max_tokens: its string so far.
_JSON_DESCRIPTION = re.compile(rf'^\s*\{{\s*"{DESCRIPTION_KEY}"\s*:\s*"((?:[^"\\]|\\.)*)')
# Added to the last message when the answer's schema is sent, so the prompt asks for what the schema allows.
JSON_ANSWER_NOTE = (
    f'\n\nGive the description as a JSON object and nothing else: {{"{DESCRIPTION_KEY}": "<your description>"}}'
)


@dataclass(frozen=True)
class ExplainerPrompt:
    """The chat messages for one feature and the sample ids of the examples they show."""

    feature: int
    messages: list[dict[str, str]]
    example_ids: tuple[int, ...]

    @property
    def prompt_hash(self) -> str:
        return identity_hash(self.messages, ensure_ascii=False)[:16]


def check_template_fits(template: PromptTemplate, config: ExplainConfig, output_kinds: Sequence[str] = ()) -> None:
    """ConfigError when the template disagrees with the contrast setting or with the output evidence shown
    (`output_kinds`): evidence would vanish or be empty."""
    where = f"prompt template {template.name!r} ({template.source})"
    wants_contrast = "contrast_examples" in template.placeholders
    contrast = config.selection.contrast_examples
    if contrast and not wants_contrast:
        raise ConfigError(
            f"explain.selection.contrast_examples is {contrast} but {where} has no {{contrast_examples}} "
            "placeholder; use the 'contrast' template or add it"
        )
    if wants_contrast and not contrast:
        raise ConfigError(
            f"{where} shows contrast examples but explain.selection.contrast_examples is 0; set it to how many to show"
        )
    wants_output = "output_evidence" in template.placeholders
    if output_kinds and not wants_output:
        raise ConfigError(
            f"the explainer shows output evidence ({', '.join(output_kinds)}) but {where} has no "
            "{output_evidence} placeholder; use the 'ensemble' template or add it"
        )
    if wants_output and not output_kinds:
        raise ConfigError(
            f"{where} shows output evidence but the explainer has none to show; set explain.output.combine "
            "(e.g. [vocab-proj]) or use the 'vocab-proj' or 'token-change' explainer"
        )


def build_prompt(
    record: FeatureRecord,
    config: ExplainConfig,
    template: PromptTemplate,
    *,
    json_answer: bool = False,
    output_kinds: Sequence[str] = (),
) -> ExplainerPrompt | None:
    """The prompt of one feature under the variant's selection, display and template, showing the output
    evidence of `output_kinds` (from `record.output`) where the template asks for it; None when the template
    shows examples and the feature has none, or the record lacks the output evidence.

    With `json_answer` (the answer's schema is sent) the last message ends with JSON_ANSWER_NOTE.
    """
    values = {"display_instructions": DISPLAY_INSTRUCTIONS[config.display.mode]}
    sample_ids: tuple[int, ...] = ()
    if "examples" in template.placeholders:
        selection = select_examples(record, config.selection)
        if not selection.examples:
            return None
        scale = record.max_token_activation()

        def numbered(label: str, examples: Sequence) -> str:
            return "\n".join(
                f"{label} {number}: {render_example(example, scale, config.display)}"
                for number, example in enumerate(examples, start=1)
            )

        values |= {
            "examples": numbered("Example", selection.examples),
            "num_examples": str(len(selection.examples)),
            "contrast_examples": numbered("Contrast example", selection.contrast),
            "num_contrast_examples": str(len(selection.contrast)),
        }
        sample_ids = tuple(selection.sample_ids)
    if output_kinds:
        shown = render_output_evidence(record.output, output_kinds) if record.output is not None else None
        if shown is None:
            return None
        values["output_evidence"] = shown
    messages = template.render(values)
    if json_answer:
        messages[-1]["content"] += JSON_ANSWER_NOTE
    return ExplainerPrompt(record.feature, messages, sample_ids)


def _json_string_content(text: str) -> str:
    """The text of a JSON string's inside, escapes resolved (kept as written when cut inside an escape)."""
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def parse_description(answer: str) -> str:
    """The description in an LLM answer: the string of a JSON answer {"description": ...} (the schema's
    shape, even cut off), then the line after the last '[DESCRIPTION]:'/'[EXPLANATION]:' marker, else the
    whole answer; whitespace collapsed, markdown emphasis and a wrapping pair of quotes removed; cut to
    DESCRIPTION_MAX_LENGTH characters, as the schema's maxLength would stop a constrained backend (a
    backend that ignores it does not make a 10 MB description)."""
    json_answer = _JSON_DESCRIPTION.match(answer)
    if json_answer:
        answer = _json_string_content(json_answer.group(1))
    markers = list(_ANSWER_MARKER.finditer(answer))
    if markers:
        rest = answer[markers[-1].end() :].strip()
        answer = rest.splitlines()[0] if rest else ""
    text = " ".join(answer.split()).strip("*` ")
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:DESCRIPTION_MAX_LENGTH].rstrip()


DESCRIPTION_ANSWER = AnswerFormat(
    "explainer", description_format("explainer"), lambda text: bool(parse_description(text))
)


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def choose_description(candidates: Sequence[str], rule: str) -> str | None:
    """One description from the non-empty candidates, or None when there are none.

    'first': the first answer. 'most-common': the answer given most often, compared without case,
    spacing or a final period (ties: the earliest). 'shortest': the shortest (ties: the earliest).
    """
    usable = [candidate for candidate in candidates if candidate]
    if not usable:
        return None
    if rule == "first":
        return usable[0]
    if rule == "shortest":
        return min(usable, key=len)
    if rule == "most-common":
        counts = Counter(_normalised(candidate) for candidate in usable)
        return max(usable, key=lambda candidate: counts[_normalised(candidate)])
    raise ValueError(f"unknown choice rule {rule!r}; use 'first', 'most-common' or 'shortest'")


class LLMExplainer(Explainer):
    """Prompts an LLM with each feature's selected examples, and the output evidence of `explain.output.combine`
    next to them (the paper's ensemble in one prompt); `prompt.num_candidates` answers per feature.

    The template is loaded and checked when the explainer is made, before any call. Candidate i > 0 is
    sent with `seed=i`, which makes it a separate request (and cache entry); its variety comes from
    `llm.temperature`. For providers that reject `seed`, add `drop_params: true` to `llm.extra_params`.
    The output-centric explainers (harness.explain._output_explainers) are this one with another template and
    evidence.
    """

    needs_pools = True

    def __init__(self, config: ExplainConfig) -> None:
        super().__init__(config)
        self.template = load_template(self.template_name)
        check_template_fits(self.template, config, self.output_kinds)

    @property
    def template_name(self) -> str:
        """The prompt template: a built-in name or a file."""
        return self.config.prompt.template

    @property
    def output_kinds(self) -> tuple[str, ...]:
        """The output evidence its prompts show, in order."""
        return tuple(self.config.output.combine)

    @property
    def needs_llm(self) -> bool:
        return True

    @property
    def needs_output_evidence(self) -> frozenset[str]:
        return frozenset(self.output_kinds)

    def settings(self) -> dict[str, Any]:
        prompt = identity_payload(self.config.prompt)
        prompt["template_text"] = self.template.text_hash  # the template's text, wherever it is read from
        del prompt["template"]
        settings: dict[str, Any] = {"llm": llm_settings(self.config.llm), "prompt": prompt}
        if "examples" in self.template.placeholders:
            settings |= {
                "selection": identity_payload(self.config.selection),
                "display": identity_payload(self.config.display),
            }
        if self.output_kinds:
            settings["output"] = output_settings(self.config.output, self.output_kinds)
        return settings

    def explain(self, records: Sequence[FeatureRecord], client: LLMClient | None) -> list[Description]:
        name = EXPLAINERS.name_of(type(self))
        if client is None:
            raise ConfigError(f"the {name!r} explainer needs an LLM client; make one from explain.llm")
        json_answer = client.sends_response_format
        prompts = [
            build_prompt(record, self.config, self.template, json_answer=json_answer, output_kinds=self.output_kinds)
            for record in records
        ]
        asked = [prompt for prompt in prompts if prompt is not None]
        conversations = [prompt.messages for prompt in asked]
        count = self.config.prompt.num_candidates
        # one concurrent batch over every feature per candidate index (a single batch by default)
        batches = [
            client.complete_many(
                conversations,
                desc=f"explain {name} ({len(asked)} features"
                + (f", candidate {index + 1}/{count})" if count > 1 else ")"),
                validate=DESCRIPTION_ANSWER.parses,
                answer_format=DESCRIPTION_ANSWER,
                trace_context=[
                    {"feature": prompt.feature, "purpose": "explain", "candidate": index} for prompt in asked
                ],
                **({"seed": index} if index else {}),
            )
            for index in range(count)
        ]
        failures = [answer for batch in batches for answer in batch if isinstance(answer, LLMError)]
        if asked and len(failures) == len(asked) * count:  # the backend is down or refuses us: not N empty rows
            raise LLMError(f"the explainer's LLM failed on all {len(asked)} features; the first failure: {failures[0]}")
        answers = {prompt.feature: [batch[position] for batch in batches] for position, prompt in enumerate(asked)}
        descriptions = []
        for record, prompt in zip(records, prompts):
            if prompt is None:
                descriptions.append(Description(record.feature, None, error=self._missing(record)))
            else:
                descriptions.append(self._describe(prompt, answers[record.feature]))
        return descriptions

    def _missing(self, record: FeatureRecord) -> str:
        """Why `record` has no prompt."""
        if self.output_kinds and record.output is None:
            return "the feature record carries no output evidence (the explain stage computes it)"
        return "the feature has no activating examples"

    def _describe(self, prompt: ExplainerPrompt, answers: list[Any]) -> Description:
        completions = [answer for answer in answers if not isinstance(answer, Exception)]
        failure = next((answer for answer in answers if isinstance(answer, Exception)), None)
        chosen = choose_description([parse_description(c.text) for c in completions], self.config.prompt.choose)
        if failure is not None:  # a choice among the candidates that did come is not the variant's description
            chosen, error = None, llm_failure(failure)
        elif chosen is not None:
            error = None
        else:
            error = f"no usable description in the LLM's answer: {completions[0].text[:200]!r}"
        return Description(
            feature=prompt.feature,
            description=chosen,
            example_ids=prompt.example_ids,
            prompt_hash=prompt.prompt_hash,
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            cost_usd=sum(c.cost_usd for c in completions),
            error=error,
        )
