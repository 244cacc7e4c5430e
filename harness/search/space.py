"""The search space: dotted config keys with choices or ranges, checked before any trial runs."""

from __future__ import annotations

import copy
from typing import Any

from harness.config import HarnessConfig, SearchParam, set_dotted, parse_config
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


def validate_space(config: HarnessConfig) -> None:
    """Raise one ConfigError listing every bad entry of `search.space` (unknown key, value the config refuses)."""
    space = config.search.space
    if not space:
        raise ConfigError("search.space is empty: name at least one setting to search, e.g. explain.prompt.template")
    base = config.model_dump(mode="json")
    problems = []
    for key, param in space.items():
        found, default = _lookup(base, key)
        if not found or isinstance(default, dict):
            problems.append(f"  search.space.{key}: unknown setting (a dotted key of a config value, e.g. explain.selection.num_examples)")
            continue
        if key.split(".")[0] in {"search", "tracking", "variants", "name"}:
            problems.append(f"  search.space.{key}: not a pipeline setting")
            continue
        samples = param.choices if param.choices is not None else [param.low, param.high]
        if param.choices is not None and not all(isinstance(value, _CATEGORICAL_TYPES) for value in param.choices):
            problems.append(f"  search.space.{key}: choices must be plain values (text, numbers, booleans)")
            continue
        if param.choices is None and isinstance(default, (bool, str, list)):
            problems.append(f"  search.space.{key}: a range needs a numeric setting; use choices for {type(default).__name__}")
            continue
        for value in samples:
            if param.choices is None and _is_integer_setting(default, param):
                value = int(value)
            data = set_dotted(copy.deepcopy(base), key, value)
            try:
                parse_config(data, source=f"(search.space.{key} = {value!r})")
            except ConfigError as error:
                problems.append(f"  search.space.{key}: value {value!r} is refused: {error}")
    if problems:
        raise ConfigError("invalid search space:\n" + "\n".join(problems))


def suggest_params(trial: Any, config: HarnessConfig) -> dict[str, Any]:
    """Ask an Optuna trial for one value per searched setting."""
    base = config.model_dump(mode="json")
    params: dict[str, Any] = {}
    for key, param in config.search.space.items():
        if param.choices is not None:
            params[key] = trial.suggest_categorical(key, param.choices)
        elif _is_integer_setting(_lookup(base, key)[1], param):
            params[key] = trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
        else:
            params[key] = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
    return params


def apply_params(config: HarnessConfig, params: dict[str, Any]) -> HarnessConfig:
    """The base config with the trial's values set (validated)."""
    data = config.model_dump(mode="json")
    for key, value in params.items():
        data = set_dotted(data, key, value)
    return parse_config(data, source="(search trial)")
