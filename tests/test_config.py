"""The config is validated once, at the edge, with errors that name the file and the key path."""

from pathlib import Path

import pytest

from harness.config import HarnessConfig, dump_config, load_config, parse_config
from harness.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


def test_defaults_are_the_fade_reference_defaults():
    fade = HarnessConfig().fade
    assert (fade.clarity_llm_calls, fade.num_samples, fade.rating_batch_size) == (15, 500, 15)
    assert (fade.max_failed_retries, fade.retry_sparse_threshold, fade.max_sparse_retries) == (1, 15, 1)
    assert fade.percentiles == [0, 50, 75, 95, 100] and fade.top_share == 0.1 and fade.gini_threshold == 0.5
    faith = fade.faithfulness
    assert faith.modification_factors == [-50, -10, -1, 0, 1, 10, 50]
    assert (faith.num_samples, faith.generation_length) == (50, 30)
    assert (faith.max_failed_retries, faith.max_sparse_retries, faith.retry_sparse_threshold) == (1, 0, 20)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    assert isinstance(load_config(path), HarnessConfig)


def test_unknown_key_names_file_and_key_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("site:\n  modul: model.layers.1.mlp\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "site.modul" in str(caught.value)
    assert "unknown key" in str(caught.value)


def test_wrong_literal_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"site\.hook.*'output' or 'input'"):
        parse_config({"site": {"hook": "inside"}})


def test_bad_values_are_rejected_before_any_work():
    cases = [
        ({"activations": {"batch_size": 0}}, "activations.batch_size"),
        ({"fade": {"percentiles": [0, 75, 50, 100]}}, "fade.percentiles"),
        ({"site": {"features": []}}, "site.features"),
        ({"site": {"features": [3, 3]}}, "site.features"),
        ({"site": {"kind": "sae"}}, "sae"),
        ({"fade": {"rater": {"extra_params": {"api_key": "sk-123"}}}}, "environment variable"),
    ]
    for data, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            parse_config(data)


def test_not_yaml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("site: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("corpus:\n  num_samples: 10\n")
    config = load_config(path, {"corpus.num_samples": 20, "site.features": [1, 2]})
    assert config.corpus.num_samples == 20 and config.site.features == [1, 2]
    assert parse_config(__import__("yaml").safe_load(dump_config(config))) == config


def test_fingerprint_changes_with_any_setting():
    base = HarnessConfig()
    changed = parse_config({"fade": {"rating_batch_size": 16}})
    assert base.fingerprint() == HarnessConfig().fingerprint()
    assert base.fingerprint() != changed.fingerprint()


def test_variant_grid_expands_to_every_combination_and_named_variants_follow():
    from harness.config import expand_variants

    config = parse_config(
        {
            "variants": {
                "grid": {"explain.prompt.template": ["plain", "delphi"], "explain.selection.num_examples": [5, 10]},
                "named": [{"name": "baseline", "set": {"explain.explainer": "top-tokens"}}],
            }
        }
    )
    variants = expand_variants(config)
    assert [name for name, _ in variants] == [
        "template=plain,num_examples=5",
        "template=plain,num_examples=10",
        "template=delphi,num_examples=5",
        "template=delphi,num_examples=10",
        "baseline",
    ]
    assert variants[3][1].explain.prompt.template == "delphi" and variants[3][1].explain.selection.num_examples == 10
    assert variants[4][1].explain.explainer == "top-tokens"
    assert all(not variant.variants.grid for _, variant in variants)


def test_bad_variants_are_named_in_the_error():
    from harness.config import expand_variants

    with pytest.raises(ConfigError, match=r"(?s)variant 'x'.*explain\.prompt\.templat"):
        expand_variants(parse_config({"variants": {"named": [{"name": "x", "set": {"explain.prompt.templat": "a"}}]}}))
    with pytest.raises(ConfigError, match="repeated: x"):
        expand_variants(parse_config({"variants": {"named": [{"name": "x"}, {"name": "x"}]}}))
    with pytest.raises(ConfigError, match="no values"):
        parse_config({"variants": {"grid": {"explain.selection.num_examples": []}}})


def test_result_fingerprint_ignores_names_concurrency_and_tracking_only():
    from harness.config import result_fingerprint

    base = HarnessConfig()
    same = parse_config({"name": "other", "tracking": {"experiment": "e"}, "fade": {"rater": {"concurrency": 3}}})
    different = parse_config({"fade": {"rater": {"model": "openai/gpt-4o-mini"}}})
    assert result_fingerprint(base) == result_fingerprint(same)
    assert result_fingerprint(base) != result_fingerprint(different)


def test_structured_output_changes_results_and_is_checked():
    from harness.config import result_fingerprint

    base = HarnessConfig()
    assert base.fade.rater.structured_output == base.explain.llm.structured_output == "auto"
    off = {"structured_output": "off"}
    for overrides in ({"fade": {"rater": off}}, {"explain": {"llm": off}}):
        assert result_fingerprint(parse_config(overrides)) != result_fingerprint(base)  # other answers
    with pytest.raises(ConfigError, match="structured_output"):
        parse_config({"fade": {"rater": {"structured_output": "always"}}})


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    """400 bytes of nested aliases stand for 10^9 values; `config show` used to expand them for hours (#30)."""
    import time

    from harness.cli import main

    lines = ["explain:", "  llm:", "    extra_params:", '      a0: &a0 ["xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx"]']
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 800
    started = time.perf_counter()
    assert main(["config", "show", str(path)]) == 2
    assert time.perf_counter() - started < 2.0
    captured = capsys.readouterr()
    assert "more than 100000 values once its YAML aliases" in captured.err and str(path) in captured.err
    assert captured.out == ""


def test_an_alias_that_repeats_a_small_block_is_fine(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("explain:\n  llm: &llm {model: openai/x, temperature: 0.5}\nfade:\n  rater: *llm\n")
    assert load_config(path).fade.rater.temperature == 0.5


@pytest.mark.parametrize("key", ["fade.percentiles", "fade.faithfulness.modification_factors"])
def test_nan_inside_a_list_setting_is_refused(key):
    from harness.config import set_dotted

    with pytest.raises(ConfigError, match=rf"{key}\[1\] is NaN"):
        parse_config(set_dotted({}, key, [0, float("nan"), 50]))
