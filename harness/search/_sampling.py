"""The search's sampler: workers of one study explore together instead of repeating each other.

With one seed, every worker proposes the same points. Here each trial draws with its own seed, derived from
`search.seed` and the trial number, so a study stays reproducible (trial n draws alike whichever worker runs
it) while trials running side by side differ. On a finite space (choices, integer or stepped ranges) a
proposal that another live or finished trial already holds is replaced by a free point, chosen under a lock
the workers of one machine share, until every point is taken. On an RDB storage shared across machines the
lock is per machine, so there the seeds alone keep workers apart.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from harness.config import HarnessConfig
from harness.errors import ConfigError
from harness.files import file_lock
from harness.search._space import distributions

POINT_ATTR = "harness.point"  # a trial's whole point, stored as soon as it is chosen
_ENUMERATED_POINTS = 100_000  # up to this many points, a free one is drawn from the list of free ones


def trial_seed(seed: int, trial_number: int) -> int:
    """The seed a trial samples with: stable for (seed, trial number), different across trial numbers."""
    return int(hashlib.sha256(f"{seed}/{trial_number}".encode()).hexdigest()[:8], 16)


def _grid_values(distribution: BaseDistribution) -> list[Any] | None:
    """Every value a distribution can take, or None when it has infinitely many."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = round((distribution.high - distribution.low) / distribution.step) + 1
        return [distribution.low + index * distribution.step for index in range(count)]
    return None


class ExploringSampler(optuna.samplers.BaseSampler):
    """Delegates to the configured sampler, made afresh per trial with the trial's seed, and keeps the
    points of a finite space apart (see the module docstring).

    Args:
        make: the configured sampler for a seed.
        seed: the study's seed (search.seed).
        space: the searched settings' distributions.
        lock: held while a trial's point is checked against the others and stored.
    """

    def __init__(
        self,
        make: Callable[[int], optuna.samplers.BaseSampler],
        seed: int,
        space: dict[str, BaseDistribution],
        lock: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self._make, self._seed, self._space, self._lock = make, seed, space, lock
        self._inner = make(seed)
        grids = {name: _grid_values(distribution) for name, distribution in space.items()}
        self._grids = None if any(values is None for values in grids.values()) else grids

    def before_trial(self, study, trial) -> None:
        self._inner = self._make(trial_seed(self._seed, trial.number))
        with self._lock():  # the grid sampler picks an unvisited point here: one worker at a time
            self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return dict(self._space)  # the whole point is chosen at once, so it can be checked against the others

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        trial = study._storage.get_trial(trial._trial_id)  # what the inner sampler's before_trial stored
        point = self._inner.sample_relative(study, trial, self._inner.infer_relative_search_space(study, trial))
        for name, distribution in self._space.items():
            if name not in point:
                point[name] = self._inner.sample_independent(study, trial, name, distribution)
        with self._lock():
            point = self._free_point(study, trial.number, point)
            study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, point)
        return point

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)

    def _free_point(self, study, number: int, proposal: dict[str, Any]) -> dict[str, Any]:
        """The proposal, or a point no other live or finished trial holds when it is taken and one is free."""
        if self._grids is None:
            return proposal
        taken = set()
        for other in study.get_trials(deepcopy=False):
            if other.number != number and other.state != optuna.trial.TrialState.FAIL:
                index = self._index(other.system_attrs.get(POINT_ATTR) or other.params)
                if index is not None:
                    taken.add(index)
        size = math.prod(len(values) for values in self._grids.values())
        index = self._index(proposal)
        if index not in taken or len(taken) >= size:
            return proposal
        draw = random.Random(trial_seed(self._seed, number))
        if size <= _ENUMERATED_POINTS:
            return self._point(draw.choice([candidate for candidate in range(size) if candidate not in taken]))
        while index in taken:
            index = draw.randrange(size)
        return self._point(index)

    def _index(self, point: dict[str, Any]) -> int | None:
        """The point's number in the grid (mixed radix over the settings), None when it is not on the grid."""
        index = 0
        for name, values in self._grids.items():
            if name not in point:
                return None
            position = _position(values, point[name])
            if position is None:
                return None
            index = index * len(values) + position
        return index

    def _point(self, index: int) -> dict[str, Any]:
        point = {}
        for name, values in reversed(self._grids.items()):
            index, position = divmod(index, len(values))
            point[name] = values[position]
        return {name: point[name] for name in self._grids}


def _position(values: list[Any], value: Any) -> int | None:
    """Where `value` is among a setting's grid values (the nearest one for numbers), None when outside."""
    if all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in [*values, value]):
        if not values[0] - 1e-9 <= value <= values[-1] + 1e-9:
            return None
        return min(range(len(values)), key=lambda position: abs(values[position] - value))
    matches = [position for position, item in enumerate(values) if type(item) is type(value) and item == value]
    return matches[0] if matches else None


def _configured_sampler(config: HarnessConfig, seed: int) -> optuna.samplers.BaseSampler:
    search = config.search
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return optuna.samplers.GridSampler({key: param.choices for key, param in search.space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def make_sampler(config: HarnessConfig, storage_location: str) -> ExploringSampler:
    """The study's sampler for this worker; `storage_location` is a journal file (locked beside it) or an RDB URL."""
    ranges = [key for key, param in config.search.space.items() if param.choices is None]
    if config.search.sampler == "grid" and ranges:
        raise ConfigError(f"the grid sampler needs choices for every setting; search.space.{ranges[0]} is a range")
    lock: Callable[[], AbstractContextManager[Any]] = nullcontext
    if "://" not in storage_location:
        lock = functools.partial(
            file_lock, Path(storage_location).with_name(Path(storage_location).name + ".sampling.lock")
        )
    return ExploringSampler(
        lambda seed: _configured_sampler(config, seed), config.search.seed, distributions(config), lock
    )
