"""Workers of one study explore together: no point twice on a finite space until it is exhausted, each trial
its own seed, the study reproducible (issue #18, item 2).

Two workers are two Study objects with their own sampler on one real journal storage; each round both ask
a trial before either tells, as two processes running trials side by side do.
"""

from __future__ import annotations

import optuna
import pytest

from harness.config import parse_config
from harness.search._sampling import make_sampler
from harness.search._space import suggest_params
from harness.search.study import make_storage

CATEGORICAL = {
    "explain.prompt.template": {"choices": ["plain", "delphi", "neuron-explainer"]},
    "explain.display.mode": {"choices": ["highlight", "values"]},
}
GRID = {
    "explain.selection.num_examples": {"low": 3, "high": 9, "step": 3},
    "explain.display.mode": {"choices": ["highlight", "values"]},
}


def _config(space: dict, sampler: str):
    return parse_config({"search": {"sampler": sampler, "seed": 0, "space": space}})


def _points(tmp_path, config, workers: int, rounds: int) -> list[tuple]:
    """The points the workers evaluate, in trial-number order."""
    location = str(tmp_path / "journal.log")
    studies = [
        optuna.create_study(study_name="s", storage=make_storage(location), sampler=make_sampler(config, location), load_if_exists=True)
        for _ in range(workers)
    ]  # fmt: skip
    points = {}
    for _ in range(rounds):
        trials = [study.ask() for study in studies]
        for trial in trials:
            points[trial.number] = tuple(sorted(suggest_params(trial, config).items()))
        for study, trial in zip(studies, trials):
            study.tell(trial, float(len(repr(points[trial.number]))))
    return [points[number] for number in sorted(points)]


@pytest.mark.parametrize(
    ("space", "sampler", "size"),
    [
        (CATEGORICAL, "tpe", 6),
        (CATEGORICAL, "random", 6),
        (GRID, "random", 6),
        (GRID, "tpe", 6),
        (CATEGORICAL, "grid", 6),
    ],
)
def test_two_workers_never_evaluate_one_point_twice_until_the_space_is_exhausted(tmp_path, space, sampler, size):
    rounds = 2 if sampler == "grid" else 4  # the grid sampler stops the study itself once every point is told
    points = _points(tmp_path, _config(space, sampler), workers=2, rounds=rounds)
    first = points[: min(size, len(points))]
    assert len(set(first)) == len(first), first


def test_a_second_worker_proposes_other_points_on_a_continuous_space(tmp_path):
    config = _config({"explain.llm.temperature": {"low": 0.0, "high": 1.0}}, "random")
    points = _points(tmp_path, config, workers=2, rounds=3)
    assert len(set(points)) == len(points)


def test_a_study_is_reproducible_trial_by_trial(tmp_path):
    config = _config(CATEGORICAL, "tpe")
    assert _points(tmp_path / "a", config, workers=2, rounds=3) == _points(tmp_path / "b", config, workers=2, rounds=3)
    one_worker = _points(tmp_path / "c", config, workers=1, rounds=2)
    assert one_worker == _points(tmp_path / "d", config, workers=1, rounds=2)
