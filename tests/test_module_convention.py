"""The module convention of harness/__init__.py: no package imports another package's `_private` module, and
a module without `_` is one another package imports (so a name tells which modules are the API).

Every import statement of harness/, leaderboard/ and benchmarks/ (TYPE_CHECKING blocks and function bodies
included) is read with `ast`; registry strings ("module:attribute") are lookups, not imports, and are not read.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("harness", "leaderboard", "benchmarks")
OWN_PACKAGES = ("harness", "leaderboard")


def _package_of(path: Path) -> str:
    """The dotted package a source file belongs to (its folder; benchmarks count as one package)."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def _is_module(dotted: str) -> bool:
    location = ROOT.joinpath(*dotted.split("."))
    return location.with_suffix(".py").is_file() or (location / "__init__.py").is_file()


def _imported_modules(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The modules an import statement loads, `from pkg import _mod` naming `pkg._mod` when that is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against the importing file's package
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    submodules = [f"{module}.{alias.name}" for alias in node.names if _is_module(f"{module}.{alias.name}")]
    return [module, *submodules]


def _private_owner(module: str) -> str | None:
    """The package that owns the first `_private` part of a dotted module name, or None if it has none."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def violations(source: str, path: Path) -> list[str]:
    """`file:line imports module` for every import of another package's private module in `source`."""
    package = _package_of(path)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for module in _imported_modules(node, package):
            owner = _private_owner(module)
            if module.split(".")[0] in OWN_PACKAGES and owner is not None and owner != package:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module} (internal to {owner})")
    return found


def test_no_package_imports_another_packages_private_module():
    found = [
        problem
        for folder in CHECKED
        for path in sorted((ROOT / folder).rglob("*.py"))
        for problem in violations(path.read_text(encoding="utf-8"), path)
    ]
    assert not found, "import the owning package's export instead:\n" + "\n".join(found)


def test_the_check_tells_another_packages_internals_from_its_own():
    outside = ROOT / "harness" / "evaluate" / "fade" / "prompt_prefix.py"
    inside = ROOT / "harness" / "sites" / "_sae.py"
    code = "from harness.sites._base import resolve_module\nfrom harness.sites import _base\n"

    assert len(violations(code, outside)) == 2
    assert violations(code, inside) == []
    assert violations("from ._base import FeatureSite\n", inside) == []
    assert violations("from harness.evaluate.scorers import _metrics\n", outside) == [
        "harness/evaluate/fade/prompt_prefix.py:1 imports harness.evaluate.scorers._metrics"
        " (internal to harness.evaluate.scorers)"
    ]
    assert violations("from harness.evaluate.scores import _Record\n", outside) == []  # a name, not a module


ENTRY_MODULES = {"harness.cli"}  # run by `harness` / `python -m harness`, imported by nobody


def unprefixed_modules_nobody_else_imports() -> list[str]:
    """harness's modules without `_` that no other package (of harness, leaderboard, benchmarks) imports."""
    public = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "harness").rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(ROOT / "harness").parts)
    }
    imported = set()
    for folder in CHECKED:
        for path in (ROOT / folder).rglob("*.py"):
            package = _package_of(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    imported.update(
                        module for module in _imported_modules(node, package) if module.rpartition(".")[0] != package
                    )
    return sorted(public - imported - ENTRY_MODULES)


def test_a_module_without_underscore_is_imported_by_another_package():
    found = unprefixed_modules_nobody_else_imports()
    assert not found, "internal to their package: rename them `_name.py`\n" + "\n".join(found)
