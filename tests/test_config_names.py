"""Every registered name a config gives is checked when the config loads, before any model or LLM work,
with the key path, a did-you-mean and the known names; the check imports no model or LLM library."""

import subprocess
import sys

import pytest
import yaml

from harness import registry
from harness.config import load_config, parse_config
from harness.errors import ConfigError
from harness.registry import EXPLAINERS, IMPORTERS, SAE_ACTIVATIONS, SCORERS, SITES

SAE = {"kind": "sae", "sae": {"path": "sae-folder"}}
# setting -> (config sections, key path, the misspelt name, the name the check should suggest, its registry)
BAD_NAMES = {
    "scorer": ({"scorers": {"enabled": ["fuzzing", "detecton"]}}, "scorers.enabled[1]", "detecton", "detection", SCORERS),
    "explainer": ({"explain": {"explainer": "lm"}}, "explain.explainer", "lm", "llm", EXPLAINERS),
    "shuffled base": (
        {"explain": {"explainer": "shuffled", "shuffled": {"base": "top-token"}}},
        "explain.shuffled.base", "top-token", "top-tokens", EXPLAINERS,
    ),
    "import format": (
        {"explain": {"explainer": "import", "imported": {"path": "d.json", "format": "nuronpedia"}}},
        "explain.imported.format", "nuronpedia", "neuronpedia", IMPORTERS,
    ),
    "site kind": ({"site": {"kind": "neurn"}}, "site.kind", "neurn", "neuron", SITES),
    "SAE activation": (
        {"site": {**SAE, "sae": {"path": "sae-folder", "activation": "jumprelux"}}},
        "site.sae.activation", "jumprelux", "jumprelu", SAE_ACTIVATIONS,
    ),
}  # fmt: skip


def write(folder, sections):
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.mark.parametrize("setting", BAD_NAMES)
def test_an_unknown_name_fails_at_load_with_its_key_path_a_suggestion_and_the_known_names(tmp_path, setting):
    sections, key, bad, suggested, names = BAD_NAMES[setting]
    path = write(tmp_path, sections)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"invalid config {path}:")
    assert f"{key}: unknown {names.kind} {bad!r}. Did you mean {suggested!r}" in message
    assert f"Known {names.kind}s: {', '.join(names.names())}" in message


def test_every_bad_name_of_a_config_is_listed_in_one_error_with_the_registrys_own_message():
    with pytest.raises(ConfigError) as caught:
        parse_config({"scorers": {"enabled": ["simul", "fuzzing", "detecton"]}, "site": {"kind": "neurn"}})
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "site.kind",
        "scorers.enabled[0]",
        "scorers.enabled[2]",
    ]
    with pytest.raises(ConfigError) as late:
        SCORERS.get("detecton")  # where the scorer is built: the same message, from the one implementation
    assert lines[-1] == f"  scorers.enabled[2]: {late.value}"


def test_auto_and_every_registered_name_pass():
    config = parse_config(
        {
            "site": {**SAE, "sae": {"path": "sae-folder", "activation": "topk"}},
            "explain": {"explainer": "shuffled", "shuffled": {"base": "llm"}, "imported": {"format": "auto"}},
            "scorers": {"enabled": SCORERS.names()},
        }
    )
    assert config.scorers.enabled == SCORERS.names() and config.site.sae.activation == "topk"
    assert parse_config({"site": SAE}).site.sae.activation == "auto"
    for explainer in EXPLAINERS:
        imported = {"path": "d.json", "format": IMPORTERS.names()[0]} if explainer == "import" else {}
        assert parse_config({"explain": {"explainer": explainer, "imported": imported}}).explain.explainer == explainer


def test_settings_that_are_names_only_when_registered_are_left_to_their_other_readings():
    """An unregistered corpus source is a file or a hub dataset id; an unregistered rater provider, an LLM."""
    from harness.raters import registered_kind

    config = parse_config(
        {"corpus": {"source": "python_docs"}, "fade": {"rater": {"model": "embeddings/all-minilm-l6-v2"}}}
    )
    assert (config.corpus.source, registered_kind(config.fade)) == ("python_docs", None)


@pytest.mark.parametrize(
    "name", [name for name in dir(registry) if isinstance(getattr(registry, name), registry.Registry)]
)
def test_every_declared_entry_imports_and_a_registered_class_or_function_knows_its_name(name):
    declared = getattr(registry, name)
    for entry in declared:
        found = declared.get(entry)
        if hasattr(found, "__qualname__"):  # classes and functions; the SAE activations are instances
            assert declared.name_of(found) == entry


def test_a_scorers_name_is_the_one_it_is_registered_under():
    assert [scorer().name for scorer in map(SCORERS.get, SCORERS)] == SCORERS.names()


def test_checking_the_names_imports_no_model_or_llm_library(tmp_path):
    code = (
        "import sys\n"
        "from harness.config import load_config, parse_config\n"
        "from harness.errors import ConfigError\n"
        f"bad = {[sections for sections, *_ in BAD_NAMES.values()]!r}\n"
        "failures = 0\n"
        "for sections in bad:\n"
        "    try:\n"
        "        parse_config(sections)\n"
        "    except ConfigError:\n"
        "        failures += 1\n"
        f"load_config({str(write(tmp_path, {'scorers': {'enabled': SCORERS.names()}}))!r})\n"
        "print(failures, sorted(name for name in ('torch', 'transformers', 'litellm', 'mlflow') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"{len(BAD_NAMES)} []"


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300)


def test_config_show_refuses_a_bad_name_with_the_message_and_no_traceback(tmp_path):
    path = write(tmp_path, {"scorers": {"enabled": ["detecton"]}})
    from_file = harness("config", "show", str(path))
    from_overrides = harness("config", "show", "--set", "explain.explainer=lm")
    for result in (from_file, from_overrides):
        assert result.returncode != 0 and result.stdout == ""
        assert "Traceback" not in result.stderr
    assert str(path) in from_file.stderr
    assert "scorers.enabled[0]: unknown scorer 'detecton'. Did you mean 'detection'" in from_file.stderr
    assert "explain.explainer: unknown explainer 'lm'. Did you mean 'llm'?" in from_overrides.stderr
