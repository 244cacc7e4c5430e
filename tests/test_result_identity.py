"""Result identity is declared once (the config schema's markers) and every key agrees with it: the run
fingerprint, the FADE result key, the activation cache key, the LLM cache key, the explainer's settings hash
and a search trial's identity. A server's address (api_base) is part of none; backend_id is part of every
key that depends on that LLM.
"""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from harness.activations._extract import engine_key_material
from harness.config import (
    LLM_BACKEND_SETTINGS,
    HarnessConfig,
    LLMConfig,
    expand_variants,
    identity_payload,
    load_config,
    operational_fields,
    parse_config,
    result_fingerprint,
    set_dotted,
)
from harness.evaluate.fade.pipeline import _base_key
from harness.explain import settings_hash
from harness.files import identity_hash
from harness.llm import LLMClient, cache_key
from harness.search.study import trial_key
from harness.testing.loopback import LoopbackServer
from harness.track.experiment import run_experiment
from tests.track.test_run_pipeline import KEY_ENV, write_config

LLM_ROLES = ("explain.llm", "fade.rater", "fade.generator")
# What the loaded model, the site and the corpus contribute to the FADE and activation keys; the settings'
# part, under test here, comes from the config.
LOADED_MODEL = SimpleNamespace(identity="subject-model")
SITE = SimpleNamespace(identity="site")
CORPUS = pd.DataFrame({"sample_id": [0, 1], "text": ["one text", "another text"]})
FEATURES = np.array([1, 2], dtype=np.int64)
MESSAGES = [{"role": "user", "content": "Describe «def» and ‘class’."}]


def with_settings(config: HarnessConfig, changes: dict[str, object]) -> HarnessConfig:
    data = config.model_dump(mode="json")
    for dotted, value in changes.items():
        data = set_dotted(data, dotted, value)
    return parse_config(data)


def llm_config(config: HarnessConfig, role: str) -> LLMConfig:
    section, name = role.split(".")
    return getattr(getattr(config, section), name)


def keys(config: HarnessConfig) -> dict[str, str]:
    """Every identity key the config gives, by name (the LLM cache's for each LLM role)."""
    found = {
        "run": result_fingerprint(config),
        "fade": identity_hash({**_base_key(config, LOADED_MODEL, SITE, CORPUS), "feature": 1, "description": "d"}),
        "activations": identity_hash(engine_key_material(LOADED_MODEL, SITE, FEATURES, config.activations)),
        "explainer": settings_hash(config.explain),
        "trial": trial_key(config, "study", 3),
    }
    for role in LLM_ROLES:
        llm = llm_config(config, role)
        found[f"llm-cache {role}"] = cache_key(identity_payload(llm, only=LLM_BACKEND_SETTINGS), MESSAGES, {})
    return found


@pytest.fixture
def base() -> HarnessConfig:
    llm = {"model": "openai/served", "api_base": "http://127.0.0.1:8000/v1"}
    return parse_config(
        {
            "explain": {"llm": llm},
            "fade": {"rater": llm, "generator": llm, "clarity_floor": {"enabled": True}},
            "scorers": {"enabled": ["detection", "intruder"]},
        }
    )


@pytest.mark.parametrize("role", LLM_ROLES)
def test_moving_a_server_to_another_port_changes_no_key(base, role):
    moved = with_settings(base, {f"{role}.api_base": "http://127.0.0.1:9999/v1"})
    assert keys(moved) == keys(base)


@pytest.mark.parametrize("role", LLM_ROLES)
def test_backend_id_changes_every_key_that_depends_on_that_llm(base, role):
    named = keys(with_settings(base, {f"{role}.backend_id": "second-server"}))
    before = keys(base)
    # The explainer LLM shapes descriptions, the rater and the generator shape FADE's results; each is an LLM
    # cache of its own; activations depend on no LLM.
    depends = {"run", "trial", f"llm-cache {role}", "explainer" if role == "explain.llm" else "fade"}
    assert {name for name in before if named[name] != before[name]} == depends


@pytest.mark.parametrize("name", sorted(operational_fields(LLMConfig)))
def test_an_operational_llm_setting_changes_no_key(base, name):
    value = {
        "api_key_env": "OTHER_KEY",
        "cache": False,
        "cache_path": "/elsewhere/llm.sqlite",
        "api_base": "http://h/v1",
        "transport": "litellm",
    }
    changed = value.get(name, 0.5 if isinstance(getattr(base.fade.rater, name), (float, type(None))) else 3)
    assert keys(with_settings(base, {f"{role}.{name}": changed for role in LLM_ROLES})) == keys(base)


def test_names_tracking_and_the_cache_folder_change_no_key(base):
    changed = with_settings(
        base,
        {"name": "other", "activations.cache_dir": "/elsewhere", "tracking.experiment": "other", "search.n_trials": 3},
    )
    assert keys(changed) == keys(base)


def test_a_result_changing_setting_changes_its_keys(base):
    hotter = keys(with_settings(base, {"fade.rater.temperature": 0.7}))
    assert hotter["run"] != keys(base)["run"] and hotter["fade"] != keys(base)["fade"]
    longer = keys(with_settings(base, {"activations.max_length": 64}))
    assert all(longer[name] != keys(base)[name] for name in ("run", "fade", "activations", "trial"))


def test_a_disabled_section_is_out_of_the_identity_until_enabled():
    plain = HarnessConfig()
    for dotted, value in (
        ("fade.clarity_floor.beats_at_z", 3.0),  # the floor is off by default
        ("scorers.detection.batch_size", 7),  # no scorer enabled
    ):
        assert result_fingerprint(with_settings(plain, {dotted: value})) == result_fingerprint(plain), dotted
    detection = with_settings(plain, {"scorers.enabled": ["detection"]})
    assert result_fingerprint(with_settings(detection, {"scorers.intruder.num_trials": 3})) == result_fingerprint(
        detection
    )
    intruder = with_settings(plain, {"scorers.enabled": ["intruder"]})
    assert result_fingerprint(with_settings(intruder, {"scorers.intruder.num_trials": 3})) != result_fingerprint(
        intruder
    )
    floor = with_settings(plain, {"fade.clarity_floor.enabled": True})
    assert result_fingerprint(with_settings(floor, {"fade.clarity_floor.beats_at_z": 3.0})) != result_fingerprint(floor)


def test_finished_runs_keep_their_identity():
    """Pinned identities of configs/demo.yaml and configs/fade-gemma-neurons-openai.yaml, as the harness
    computed them before identity was declared in the schema. A change here means every existing run of
    these configs loses its identity (re-run instead of skipped) and their cached results go unused."""
    demo = dict(expand_variants(load_config("configs/demo.yaml")))
    assert result_fingerprint(demo["template=plain"]) == "707f451c1ecd82bc"
    assert result_fingerprint(demo["template=delphi"]) == "030c2692892caf26"
    assert result_fingerprint(demo["top-tokens"]) == "28c9495089c8494c"
    assert result_fingerprint(demo["shuffled"]) == "ec4767075fbdb8b2"
    assert settings_hash(demo["template=plain"].explain) == "20a79c806b6eae48"
    gemma = dict(expand_variants(load_config("configs/fade-gemma-neurons-openai.yaml")))
    assert result_fingerprint(gemma["num_examples=5"]) == "d8e494d5e45c50b7"
    assert result_fingerprint(gemma["top-tokens"]) == "04303881a3d3133a"
    assert settings_hash(gemma["num_examples=5"].explain) == "ed59317a76d91433"
    # The LLM cache key of demo's explainer request (explain.llm: temperature 0, max_tokens 40): answers
    # stored before keep being found.
    request = {"temperature": 0.0, "max_tokens": 40}
    backend = identity_payload(demo["template=plain"].explain.llm, only=LLM_BACKEND_SETTINGS)
    assert cache_key(backend, MESSAGES, request) == "86646d13034c9f52982b6e754f932e6a63e40b3bc7e47b2377353ec852e14b9f"


@pytest.mark.slow
def test_demo_fade_and_activation_keys_are_unchanged():
    """configs/demo.yaml's FADE result key and activation cache key on the real model, site and corpus,
    pinned as they were before identity was declared in the schema (a change: stored results go unused)."""
    from harness.corpus import corpus_fingerprint, load_corpus
    from harness.model import load_subject_model
    from harness.sites import build_site

    demo = dict(expand_variants(load_config("configs/demo.yaml")))["template=plain"]
    loaded = load_subject_model(demo.model)
    corpus = load_corpus(demo.corpus, loaded.tokenizer)
    site = build_site(demo.site, loaded)
    fade_key = identity_hash({**_base_key(demo, loaded, site, corpus), "feature": 3, "description": "Python keywords"})
    assert fade_key == "ea505e591152eaaaf9e4c1ebd92ecd02e721c821cbdd02de4aca4308e6191e6f"
    material = engine_key_material(loaded, site, site.resolve_features(site.selection), demo.activations)
    activation_key = identity_hash({**material, "corpus": corpus_fingerprint(corpus)})
    assert activation_key == "f19382ca48da153768098c4fc5c6190292c01145f7561c71f3eee0f3a20ac2fd"


def test_two_servers_under_one_model_string_share_answers_unless_backend_id_tells_them_apart(tmp_path):
    cache_path = str(tmp_path / "llm-cache.sqlite")
    with LoopbackServer() as first, LoopbackServer() as second:

        def ask(api_base: str, **settings: object) -> bool:
            config = LLMConfig(model="openai/scripted", api_base=api_base, cache_path=cache_path, **settings)
            client = LLMClient(config, progress=False)
            try:
                (answer,) = client.complete_many([MESSAGES], return_exceptions=False)
            finally:
                client.close()
            return answer.cached

        assert not ask(first.url)
        assert ask(second.url, concurrency=2, timeout_s=5.0)  # another address and limits: the same answer
        assert not ask(second.url, backend_id="second")  # named apart: asked again
        assert ask(first.url, backend_id="second")


@pytest.mark.slow
def test_a_finished_run_is_skipped_after_an_operational_change_and_rerun_after_a_result_changing_one(
    tmp_path,
    server,  # noqa: F811 (the fixture imported above)
):
    one_variant = {"named": [{"name": "top-tokens", "set": {"explain.explainer": "top-tokens"}}]}
    path = write_config(tmp_path, server.url, "identity")
    config = load_config(path, {"variants": one_variant})
    with pytest.MonkeyPatch.context() as patch, LoopbackServer() as moved:
        patch.setenv(KEY_ENV, "sk-identity-test")
        patch.chdir(tmp_path)
        (first,) = run_experiment(config, progress=False)
        operational = {
            "api_base": moved.url,
            "concurrency": 3,
            "timeout_s": 30.0,
            "cache_path": str(tmp_path / "x.sqlite"),
        }
        changes = {
            f"{role}.{name}": value for role in ("explain.llm", "fade.rater") for name, value in operational.items()
        }
        (again,) = run_experiment(load_config(path, {"variants": one_variant, **changes}), progress=False)
        (named,) = run_experiment(
            load_config(path, {"variants": one_variant, **changes, "fade.rater.backend_id": "moved"}), progress=False
        )
    mlflow.set_tracking_uri(None)
    assert not first.skipped
    assert again.skipped and again.run_id == first.run_id
    assert not named.skipped and named.run_id != first.run_id
