"""Every registry of the harness, keyed by name, so a new site kind, explainer or scorer is one small file
and one line here.

Why the names live here and not in decorators on the registered classes: a config names registered
things (`scorers.enabled`, `explain.explainer`, `site.kind`, ...) and must be checked before any work,
without importing what they name; the modules that define scorers, sites and explainers import torch,
transformers or litellm. So each registry is declared in this light module as a table from name to where
its object is defined ("package.module:attribute"), and the object is imported only when `get` asks for it.
The table is the one place a name is written: a registered class that needs its own name asks for it
(`name_of`), and `harness.config.check_names` reads the same tables without importing anything heavy.

The alternatives cost more: registration decorators show their names only once the heavy modules are
imported; keeping those modules light would take lazy imports across most of the package, which any later
top-level import undoes unnoticed; a light list of names next to the decorators writes each name twice.

Plugins: another installed distribution adds entries through a Python entry-point group per registry
(`feature_harness.scorers`, `feature_harness.explainers`, ...; `PLUGIN_GROUP_PREFIX` + the registry's group),
declared in its pyproject.toml as `[project.entry-points."feature_harness.scorers"] overlap =
"my_scorers:OverlapScorer"`. An entry point is name -> "module:attribute" metadata, the same form as the
tables here, so the registry reads the groups on first use without importing any plugin.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.evaluate.scorers import Scorer
    from harness.explain import Explainer, Importer
    from harness.raters import RaterKind
    from harness.sites import FeatureSite, SAEActivation
    from harness.testing.loopback import Responder

T = TypeVar("T")
PLUGIN_GROUP_PREFIX = "feature_harness."


class Registry(Generic[T]):
    """Names mapped to objects that are imported on first use.

    Args:
        kind: what the registry holds ("site kind", "explainer", ...), used in error messages.
        entries: name -> "package.module:attribute" of the registered object.
        auto: a value that names no entry but asks the caller to pick one from its input (e.g. "auto" for
            an import format detected from the file); None when the registry has no such value.
        group: the entry-point group (after PLUGIN_GROUP_PREFIX) whose entries installed distributions add,
            read on first use; None for a registry that takes no plugins.
    """

    def __init__(
        self, kind: str, entries: Mapping[str, str], *, auto: str | None = None, group: str | None = None
    ) -> None:
        self.kind = kind
        self._targets = dict(entries)
        self.auto = auto
        self.group = None if group is None else PLUGIN_GROUP_PREFIX + group
        self._names_by_target = {target: name for name, target in self._targets.items()}
        self._builtin = frozenset(self._targets)
        self._distributions: dict[str, str] = {}  # plugin name -> the distribution that declares it
        self._plugins_read = group is None

    def _read_plugins(self) -> None:
        """Add the entry points of the registry's group, once; a ConfigError when one takes a built-in's name
        (or a name another distribution or `add` took), naming the distribution."""
        if self._plugins_read:
            return
        found: dict[str, tuple[str, str]] = {}  # name -> (target, distribution)
        for point in importlib.metadata.entry_points(group=self.group or ""):
            distribution = point.dist.name if point.dist is not None else "an unnamed distribution"
            if point.name in self._builtin:
                taken_by: str | None = "the harness"
            elif point.name in found:
                taken_by = f"the distribution {found[point.name][1]!r}"
            elif point.name in self._targets or point.name == self.auto:
                taken_by = "a registration made in Python (Registry.add)"
            else:
                taken_by = None
            if ":" not in point.value:
                raise ConfigError(
                    f"the entry point {point.name!r} of the installed distribution {distribution!r} (group "
                    f"{self.group!r}) names {point.value!r}; a {self.kind} entry point is 'module:attribute'"
                )
            if taken_by is not None:
                raise ConfigError(
                    f"the {self.kind} {point.name!r} of the installed distribution {distribution!r} (entry point "
                    f"group {self.group!r}) takes a name already registered by {taken_by}; rename it in "
                    f"{distribution}'s entry points, or uninstall {distribution}"
                )
            found[point.name] = (point.value, distribution)
        for name, (target, distribution) in found.items():
            self._targets[name] = target
            self._names_by_target[target] = name
            self._distributions[name] = distribution
        self._plugins_read = True

    def distribution(self, name: str) -> str | None:
        """The installed distribution whose entry point registers `name`; None for the harness's own names
        and those registered in Python."""
        self._read_plugins()
        return self._distributions.get(name)

    def add(self, name: str, target: str) -> None:
        """Register `name` as `target` ("package.module:attribute"), for what is defined outside the harness
        and not installed as a plugin (a test, a notebook); the harness's own entries are the tables below.
        Call it before a config naming `name` is loaded. A ValueError when `name` is taken or `target` is not
        of that form."""
        self._read_plugins()
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"a {self.kind} target is 'package.module:attribute', got {target!r}")
        if name in self._targets or (self.auto is not None and name == self.auto):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._targets[name] = target
        self._names_by_target[target] = name

    def get(self, name: str) -> T:
        """The object registered as `name` (imported now); a ConfigError naming the close matches otherwise."""
        problem = self.unknown(name)
        if problem is not None:
            raise ConfigError(problem)
        module, _, attribute = self._targets[name].partition(":")
        found: Any = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
        return found

    def unknown(self, name: str) -> str | None:
        """Why `name` is not a registered name (with the close matches and the known names); None when it is."""
        self._read_plugins()
        if name in self._targets:
            return None
        close = difflib.get_close_matches(name, self._targets, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        auto = f" (or {self.auto!r})" if self.auto is not None else ""
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}{auto}."

    def chosen(self, value: str) -> str | None:
        """The registered name a setting gives: `value` itself, or None when it is the `auto` value."""
        return None if self.auto is not None and value == self.auto else value

    def name_of(self, obj: Any) -> str:
        """The name `obj` (a registered class or function) is registered under, found without importing; a
        plugin's entry point may name it where its package re-exports it (then its plugins are imported)."""
        target = f"{obj.__module__}:{obj.__qualname__}"
        self._read_plugins()
        if target in self._names_by_target:
            return self._names_by_target[target]
        for name in self._distributions:
            if self.get(name) is obj:
                return name
        raise LookupError(f"{target} is not registered as a {self.kind}")

    def names(self) -> list[str]:
        self._read_plugins()
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        self._read_plugins()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


EMBEDDED_CORPORA: Registry[Callable[[], Sequence[tuple[str, str]]]] = Registry(
    "embedded corpus",  # each a function returning (source, text) records
    {"python-docs": "harness.corpus._python_docs:python_docs_records"},
)
SITES: Registry[type[FeatureSite]] = Registry(
    "site kind",
    {
        "neuron": "harness.sites._neuron:NeuronSite",
        "sae": "harness.sites._sae:SAESite",
    },
    group="sites",
)
SAE_ACTIVATIONS: Registry[SAEActivation] = Registry(
    "SAE activation",  # 'auto': the one the SAE's files give
    {
        "relu": "harness.sites._sae_files:RELU",
        "jumprelu": "harness.sites._sae_files:JUMPRELU",
        "topk": "harness.sites._sae_files:TOPK",
    },
    auto="auto",
)
EXPLAINERS: Registry[type[Explainer]] = Registry(
    "explainer",
    {
        "llm": "harness.explain._llm_explainer:LLMExplainer",
        "top-tokens": "harness.explain._top_tokens:TopTokensExplainer",
        "shuffled": "harness.explain._shuffled:ShuffledExplainer",
        "import": "harness.explain._imported:ImportedExplainer",
        "vocab-proj": "harness.explain._output_explainers:VocabProjExplainer",
        "token-change": "harness.explain._output_explainers:TokenChangeExplainer",
        "ensemble": "harness.explain._ensemble:EnsembleExplainer",
    },
    group="explainers",
)
IMPORTERS: Registry[type[Importer]] = Registry(
    "import format",  # 'auto': detected from the file
    {
        "fade": "harness.explain._importers:FadeImporter",
        "neuronpedia": "harness.explain._importers:NeuronpediaImporter",
        "neuron-explainer": "harness.explain._importers:NeuronExplainerImporter",
        "csv": "harness.explain._importers:CsvImporter",
        "records": "harness.explain._importers:RecordsImporter",
    },
    auto="auto",
    group="importers",
)
SCORERS: Registry[type[Scorer]] = Registry(
    "scorer",
    {
        "detection": "harness.evaluate.scorers._detection:DetectionScorer",
        "fuzzing": "harness.evaluate.scorers._fuzzing:FuzzingScorer",
        "simulation": "harness.evaluate.scorers._simulation:SimulationScorer",
        "embedding": "harness.evaluate.scorers._embedding:EmbeddingScorer",
        "intruder": "harness.evaluate.scorers._intruder:IntruderScorer",
        "saebench": "harness.evaluate.scorers._saebench:SAEBenchScorer",
        "output-detection": "harness.evaluate.scorers._output_detection:OutputDetectionScorer",
        "input-score": "harness.evaluate.scorers._vocab_scores:InputScoreScorer",
        "output-score": "harness.evaluate.scorers._vocab_scores:OutputScoreScorer",
    },
    group="scorers",
)
EMBEDDING_RATER = "embedding"
RATERS: Registry[RaterKind] = Registry(
    # Named by the provider part of fade.rater.model (before the first '/'); a model string whose provider
    # is not registered names an LLM (litellm).
    "rater",
    {EMBEDDING_RATER: "harness.raters._embedding:EmbeddingRater"},
    group="raters",
)
RESPONDERS: Registry[Callable[[], Responder]] = Registry(
    "responder",  # of the loopback server (`harness llm serve --responder`)
    {
        "fade": "harness.testing.responders:FadeResponder",
        "echo": "harness.testing.responders:EchoResponder",
    },
)
