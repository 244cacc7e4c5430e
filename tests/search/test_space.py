"""Bad search spaces are clear errors before any trial; good ones suggest values of the right type."""

from pathlib import Path

import optuna
import pytest

from harness.config import load_config, parse_config
from harness.errors import ConfigError
from harness.search._space import apply_params, suggest_params, validate_space


def _config(space):
    return parse_config({"search": {"space": space}})


def test_empty_choices_and_inverted_range_fail_at_load():
    with pytest.raises(ConfigError, match="choices is empty"):
        _config({"explain.prompt.template": {"choices": []}})
    with pytest.raises(ConfigError, match=r"low \(50.0\) is greater than high \(5.0\)"):
        _config({"explain.selection.num_examples": {"low": 50, "high": 5}})


def test_unknown_setting_and_refused_values_are_listed_together():
    config = _config(
        {
            "explain.prompt.tempalte": {"choices": ["plain"]},
            "explain.selection.num_examples": {"low": 0, "high": 10},
            "explain.prompt.template": {"low": 1, "high": 2},
            "tracking.experiment": {"choices": ["x"]},
        }
    )
    with pytest.raises(ConfigError) as caught:
        validate_space(config)
    message = str(caught.value)
    assert "explain.prompt.tempalte: unknown setting" in message
    assert "explain.selection.num_examples: value 0 is refused" in message
    assert "explain.prompt.template: a range needs a numeric setting" in message
    assert "tracking.experiment: not a pipeline setting" in message
    with pytest.raises(ConfigError, match="search.space is empty"):
        validate_space(parse_config({}))


def test_suggestions_have_the_setting_type_and_apply_cleanly():
    config = _config(
        {
            "explain.prompt.template": {"choices": ["plain", "delphi"]},
            "explain.selection.num_examples": {"low": 5, "high": 50, "step": 5},
            "explain.llm.temperature": {"low": 0.0, "high": 1.0},
        }
    )
    validate_space(config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        params = suggest_params(trial, config)
        assert params["explain.prompt.template"] in {"plain", "delphi"}
        assert isinstance(params["explain.selection.num_examples"], int)
        assert params["explain.selection.num_examples"] % 5 == 0
        assert 0.0 <= params["explain.llm.temperature"] <= 1.0
        applied = apply_params(config, params)
        assert applied.explain.selection.num_examples == params["explain.selection.num_examples"]
        study.tell(trial, 0.0)


def test_settings_that_only_work_together_are_checked_together():
    # `contrast` needs contrast examples, which every other template lacks a placeholder for.
    mixed = _config({"explain.prompt.template": {"choices": ["delphi", "contrast"]}})
    with pytest.raises(ConfigError, match=r"template: value 'contrast' is refused.*contrast_examples is 0"):
        validate_space(mixed)
    paired = _config(
        {
            "explain.prompt.template": {"choices": ["delphi", "contrast"]},
            "explain.selection.contrast_examples": {"choices": [0, 4]},
        }
    )
    with pytest.raises(ConfigError) as caught:
        validate_space(paired)
    message = str(caught.value)
    assert "explain.prompt.template = 'delphi', explain.selection.contrast_examples = 4 is refused" in message
    assert "explain.prompt.template = 'contrast', explain.selection.contrast_examples = 0 is refused" in message
    validate_space(
        _config(
            {
                "explain.prompt.template": {"choices": ["contrast"]},
                "explain.selection.contrast_examples": {"low": 2, "high": 6},
            }
        )
    )


def test_the_shipped_search_config_is_valid_together():
    validate_space(load_config(Path(__file__).parents[2] / "configs" / "search-demo.yaml"))
