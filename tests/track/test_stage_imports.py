"""The stages run without tracking, tracking imports light, and the two packages import each other in one
direction only (issue #16: one place per decision). Each import check runs in a fresh interpreter, so
modules other tests loaded do not hide what an import pulls in."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import harness

PACKAGE_ROOT = Path(harness.__file__).parent
# What the stages load when they run; importing the tracking code must not load it.
HEAVY = (
    "torch",
    "transformers",
    "litellm",
    "harness.activations",
    "harness.evaluate.fade.pipeline",
    "harness.evaluate.scorers",
    "harness.explain",
    "harness.llm",
    "harness.model",
    "harness.raters",
)


def _loaded_after_importing(modules: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules named by `prefixes` (a prefix or a submodule of one) loaded once every module of the
    `modules` package(s) (comma-separated) is imported, in a fresh interpreter."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"for name in {modules!r}.split(','):\n"
        "    package = importlib.import_module(name)\n"
        "    for module in pkgutil.walk_packages(getattr(package, '__path__', []), name + '.'):\n"
        "        importlib.import_module(module.name)\n"
        f"prefixes = {prefixes!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def test_the_stages_import_no_tracking_and_no_mlflow():
    assert _loaded_after_importing("harness.stages", ("harness.track", "mlflow")) == []


def test_the_tracking_modules_import_no_model_llm_or_stage_internals():
    assert _loaded_after_importing("harness.track", HEAVY) == []


def test_the_artifact_paths_import_nothing():
    assert _loaded_after_importing("harness.artifacts", ("harness", "pandas", "numpy")) == [
        "harness",
        "harness.artifacts",
    ]


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that the file imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from package import module`
    return found & known


def _module_files(*packages: str) -> dict[str, Path]:
    files = {}
    for package in packages:
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
            parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_the_tracking_and_stage_modules():
    """Not even one broken by an import inside a function: each module can be read without its importers."""
    files = _module_files("track", "stages")
    graph = {module: _imported_modules(path, set(files)) - {module} for module, path in files.items()}
    assert graph["harness.track.experiment"] >= {"harness.track.variant", "harness.stages"}  # the scan sees imports
    assert _cycle(graph) is None


def test_no_module_of_a_real_run_imports_the_test_doubles():
    packages = "harness.stages,harness.track,harness.llm,harness.evaluate,harness.explain,harness.raters,harness.search"
    assert _loaded_after_importing(packages, ("harness.testing",)) == []
