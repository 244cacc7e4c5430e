"""Prompt templates of the LLM explainer: built-in ones by name, or a user's text file.

A template is plain text with `{name}` placeholders (write `{{` and `}}` for literal braces). A line
`### SYSTEM` starts the system message and a line `### USER` the user message; a file without these
headers is one user message. Placeholders are checked when the template is loaded, so a typo fails
before any LLM call.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import ConfigError

PLACEHOLDERS = {
    "examples": "the activating examples, numbered, in the display format",
    "num_examples": "how many activating examples are shown",
    "contrast_examples": "the low/zero-activation contrast examples, numbered",
    "num_contrast_examples": "how many contrast examples are shown",
    "display_instructions": "one sentence that says how activations are marked in the examples",
    "output_evidence": "the tokens the feature promotes and suppresses in the output (VocabProj, TokenChange)",
}
_SECTION_HEADERS = {"### SYSTEM": "system", "### USER": "user"}


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded, checked template: its messages' texts and where it came from."""

    name: str
    source: str  # "built-in" or the file path
    system: str | None
    user: str
    placeholders: frozenset[str]

    @property
    def text_hash(self) -> str:
        """Hash of the template's text, so editing a template file makes a new variant."""
        return hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()[:16]

    def render(self, values: dict[str, str]) -> list[dict[str, str]]:
        """Chat messages with the placeholders filled in (values are inserted as plain text)."""
        messages = [{"role": "system", "content": self.system.format(**values)}] if self.system else []
        messages.append({"role": "user", "content": self.user.format(**values)})
        return messages


def builtin_template_names() -> list[str]:
    folder = resources.files("harness.explain") / "templates"
    return sorted(entry.name.removesuffix(".txt") for entry in folder.iterdir() if entry.name.endswith(".txt"))


def _placeholders(text: str, where: str) -> frozenset[str]:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ConfigError(f"prompt template {where}: {error}; write {{{{ and }}}} for literal braces") from None
    known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS:
            raise ConfigError(
                f"prompt template {where}: unknown placeholder {{{field_name}}}. Known placeholders: {known} "
                "(write {{ and }} for literal braces)"
            )
        if format_spec or conversion:
            raise ConfigError(
                f"prompt template {where}: placeholder {{{field_name}}} takes no format or conversion; "
                f"write it as {{{field_name}}}"
            )
        names.add(field_name)
    return frozenset(names)


def parse_template(text: str, name: str, source: str) -> PromptTemplate:
    """Split a template's text into messages and check its placeholders.

    Args:
        text: the template text.
        name: the template's name (built-in name or file stem), for the record.
        source: "built-in" or the file path; named in errors.
    """
    where = f"{name!r} ({source})"
    preamble: list[str] = []
    sections: dict[str, list[str]] = {}
    current = preamble
    for line in text.splitlines():
        header = _SECTION_HEADERS.get(line.strip())
        if header is None:
            current.append(line)
        elif header in sections:
            raise ConfigError(f"prompt template {where}: the header '{line.strip()}' appears twice")
        else:
            current = sections[header] = []
    if not sections:
        sections["user"] = preamble
    elif "".join(preamble).strip():
        raise ConfigError(f"prompt template {where}: text before the first '### SYSTEM'/'### USER' header")
    system = "\n".join(sections.get("system", [])).strip() or None
    user = "\n".join(sections.get("user", [])).strip()
    if not user:
        raise ConfigError(f"prompt template {where}: the user message is empty; put the prompt after '### USER'")
    placeholders = _placeholders(system or "", where) | _placeholders(user, where)
    if not placeholders & {"examples", "output_evidence"}:
        raise ConfigError(
            f"prompt template {where} shows no evidence; add the placeholder {{examples}} and/or {{output_evidence}}"
        )
    return PromptTemplate(name=name, source=source, system=system, user=user, placeholders=placeholders)


def load_template(name_or_path: str) -> PromptTemplate:
    """A built-in template by name (see `builtin_template_names()`) or a template file by path."""
    builtins = builtin_template_names()
    if name_or_path in builtins:
        text = (resources.files("harness.explain") / "templates" / f"{name_or_path}.txt").read_text(encoding="utf-8")
        return parse_template(text, name_or_path, "built-in")
    path = Path(name_or_path)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"prompt template file {path} cannot be read: {error}") from None
        return parse_template(text, path.stem, str(path))
    raise ConfigError(
        f"prompt template {name_or_path!r} is neither a built-in template ({', '.join(builtins)}) "
        "nor an existing file; check the name or the path"
    )
