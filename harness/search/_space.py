"""The search space: dotted config keys with choices or ranges, checked before any trial runs."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

from harness.config import HarnessConfig, SearchParam, parse_config, set_dotted
from harness.errors import ConfigError

# Optuna stores categorical values as these types only.
_CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def _lookup(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_integer_setting(default: Any, param: SearchParam) -> bool:
    """Integer settings (or unset optional ones) searched with whole bounds get integer suggestions."""
    bounds_are_whole = all(float(value).is_integer() for value in (param.low, param.high))
    step_is_whole = param.step is None or float(param.step).is_integer()
    integer_default = default is None or isinstance(default, int) and not isinstance(default, bool)
    return integer_default and bounds_are_whole and step_is_whole


def _refusal(base: dict[str, Any], values: dict[str, Any]) -> str | None:
    """Why the base config with these values set fails before any work (parse, explainer set-up), or None."""
    from harness.explain import make_explainer

    data = copy.deepcopy(base)
    for key, value in values.items():
        data = set_dotted(data, key, value)
    try:
        make_explainer(parse_config(data, source="(search space)").explain)  # loads the template, checks it fits
    except ConfigError as error:
        return str(error)
    return None


def _combinations(candidates: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every value, then every pair of values of two settings; the other searched settings at their first
    value, so each is a combination the sampler can draw (a refusal is never a false alarm)."""
    first = {key: values[0] for key, values in candidates.items()}
    for key, values in candidates.items():
        for value in values:
            yield first | {key: value}
    for (key_a, values_a), (key_b, values_b) in itertools.combinations(candidates.items(), 2):
        for value_a, value_b in itertools.product(values_a, values_b):
            yield first | {key_a: value_a, key_b: value_b}


def validate_space(config: HarnessConfig) -> None:
    """Raise one ConfigError listing every bad entry of `search.space` (unknown key, value the config refuses).

    Values are checked in combinations, since some settings only work together: the `contrast` template
    needs explain.selection.contrast_examples, which every other template refuses.
    """
    space = config.search.space
    if not space:
        raise ConfigError("search.space is empty: name at least one setting to search, e.g. explain.prompt.template")
    base = config.model_dump(mode="json")
    problems = []
    candidates: dict[str, list[Any]] = {}
    for key, param in space.items():
        found, default = _lookup(base, key)
        if not found or isinstance(default, dict):
            problems.append(
                f"  search.space.{key}: unknown setting (a dotted key of a config value, e.g. explain.selection.num_examples)"
            )
            continue
        if key.split(".")[0] in {"search", "tracking", "variants", "name"}:
            problems.append(f"  search.space.{key}: not a pipeline setting")
            continue
        if param.choices is not None and not all(isinstance(value, _CATEGORICAL_TYPES) for value in param.choices):
            problems.append(f"  search.space.{key}: choices must be plain values (text, numbers, booleans)")
            continue
        if param.choices is None and isinstance(default, (bool, str, list)):
            problems.append(
                f"  search.space.{key}: a range needs a numeric setting; use choices for {type(default).__name__}"
            )
            continue
        if param.choices is not None:
            candidates[key] = list(param.choices)
        else:
            integer = _is_integer_setting(default, param)
            candidates[key] = [int(value) if integer else value for value in (param.low, param.high)]
    refusals = set()
    for values in _combinations(candidates):
        refusal = _refusal(base, values)
        if refusal is None or refusal in refusals:
            continue
        refusals.add(refusal)
        if len(values) == 1:
            [(key, value)] = values.items()
            problems.append(f"  search.space.{key}: value {value!r} is refused: {refusal}")
        else:
            together = ", ".join(f"{key} = {value!r}" for key, value in values.items())
            problems.append(f"  search.space: {together} is refused: {refusal}")
    if problems:
        raise ConfigError("invalid search space:\n" + "\n".join(problems))


def distributions(config: HarnessConfig) -> dict[str, Any]:
    """The Optuna distribution of every searched setting (integer settings get integer ones)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    base = config.model_dump(mode="json")
    found: dict[str, Any] = {}
    for key, param in config.search.space.items():
        if param.choices is not None:
            found[key] = CategoricalDistribution(param.choices)
        elif _is_integer_setting(_lookup(base, key)[1], param):
            found[key] = IntDistribution(int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
        else:
            found[key] = FloatDistribution(param.low, param.high, step=param.step, log=param.log)
    return found


def suggest_params(trial: Any, config: HarnessConfig) -> dict[str, Any]:
    """Ask an Optuna trial for one value per searched setting."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    params: dict[str, Any] = {}
    for key, distribution in distributions(config).items():
        if isinstance(distribution, CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, distribution.choices)
        elif isinstance(distribution, IntDistribution):
            params[key] = trial.suggest_int(
                key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
        else:
            params[key] = trial.suggest_float(
                key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
            )
    return params


def apply_params(config: HarnessConfig, params: dict[str, Any]) -> HarnessConfig:
    """The base config with the trial's values set (validated)."""
    data = config.model_dump(mode="json")
    for key, value in params.items():
        data = set_dotted(data, key, value)
    return parse_config(data, source="(search trial)")
