"""System prompts of the LLM scorers, one `<scorer>.txt` each (shipped as package data)."""

from __future__ import annotations

from importlib.resources import files


def system_prompt(scorer: str) -> str:
    """The system prompt of a scorer, as the rater receives it."""
    return files(__name__).joinpath(f"{scorer}.txt").read_text(encoding="utf-8").strip()
