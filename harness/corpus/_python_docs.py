"""The embedded offline corpus: CPython's own documentation, cut into paragraphs.

Two parts, both shipped with every CPython: the language reference topics of `pydoc_data.topics` (what
`help('if')` prints) and the docstrings of a fixed list of pure-Python standard-library modules, read
with `ast` from their source files so that nothing is imported (some modules act on import).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

DOCSTRING_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses",
    "datetime", "difflib", "enum", "fractions", "functools", "glob", "heapq", "inspect", "ipaddress", "json",
    "logging", "pathlib", "pprint", "queue", "random", "shutil", "statistics", "string", "subprocess",
    "tempfile", "textwrap", "threading", "typing", "urllib", "uuid", "zipfile",
)  # fmt: skip

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Consecutive paragraphs are joined up to this length, so that samples read like running text
# (headings and one-line paragraphs alone say little).
SAMPLE_MIN_CHARS = 200


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of `text`, stripped, joined until each has SAMPLE_MIN_CHARS."""
    blocks: list[str] = []
    current = ""
    for block in _PARAGRAPH_BREAK.split(text):
        if block.strip():
            current = f"{current}\n\n{block.strip()}" if current else block.strip()
        if len(current) >= SAMPLE_MIN_CHARS:
            blocks.append(current)
            current = ""
    return blocks + [current] if current else blocks


@functools.cache
def python_docs_records() -> tuple[tuple[str, str], ...]:
    """(source, text) pairs in a fixed order: reference topics by name, then module docstrings."""
    from pydoc_data.topics import topics

    records = [(f"pydoc:{name}", block) for name in sorted(topics) for block in paragraphs(topics[name])]
    for module_name in DOCSTRING_MODULES:
        source_file = _module_source(module_name)
        if source_file is not None:
            records.extend(_docstring_records(module_name, source_file))
    return tuple(records)


def _module_source(module_name: str) -> Path | None:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _docstring_records(module_name: str, source_file: Path) -> list[tuple[str, str]]:
    tree = ast.parse(source_file.read_text(encoding="utf-8"))
    records: list[tuple[str, str]] = []

    def visit(node: ast.AST, qualname: str) -> None:
        docstring = ast.get_docstring(node)
        if docstring:
            records.extend((f"docstring:{qualname}", block) for block in paragraphs(docstring))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, f"{qualname}.{child.name}")

    visit(tree, module_name)
    return records
