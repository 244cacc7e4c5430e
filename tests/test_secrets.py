"""Secrets given inline in a config are refused at load, and one that slips through is never published.

The cases are the ones a probe of the CLI found accepted and written in clear to MLflow params and the
`config.yaml` artifact (issue #18, item 1).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from harness.config import HarnessConfig, LLMConfig, dump_config, parse_config
from harness.errors import ConfigError
from harness.secrets import REDACTED, is_secret_name, redact, redact_text
from harness.track.runs import log_params, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment
from harness.track.variant import log_config_artifact, variant_params

KEY = "sk-planted-0123456789abcdef"


@pytest.mark.parametrize(
    ("llm", "where"),
    [
        ({"extra_params": {"api_key": KEY}}, "extra_params.api_key"),
        ({"extra_params": {"extra_body": {"api_key": KEY}}}, "extra_params.extra_body.api_key"),
        ({"extra_params": {"apikey": KEY}}, "extra_params.apikey"),
        ({"extra_params": {"extra_body": {"auth": [{"X-Api-Key": KEY}]}}}, "extra_params.extra_body.auth"),
        (
            {"extra_params": {"extra_body": {"items": [{"accessToken": KEY}]}}},
            "extra_params.extra_body.items.0.accessToken",
        ),
        ({"api_base": f"http://u:{KEY}@host/v1"}, "api_base"),
        ({"api_base": f"http://host/v1?api-key={KEY}"}, "api_base"),
        ({"api_key_env": KEY}, "api_key_env"),
    ],
)
def test_an_inline_secret_is_refused_at_load_without_echoing_it(llm, where):
    with pytest.raises(ConfigError) as caught:
        parse_config({"explain": {"llm": llm}})
    message = str(caught.value)
    assert where in message and "environment variable" in message
    assert KEY not in message


def test_plain_settings_are_not_taken_for_secrets():
    config = parse_config(
        {"fade": {"rater": {
            "api_base": "http://127.0.0.1:8765/v1?deployment=small", "api_key_env": "OPENAI_API_KEY",
            "extra_params": {"extra_body": {"top_k": 5, "max_tokens": 3, "thinking": {"budget_tokens": 10}}},
        }}}
    )  # fmt: skip
    assert config.fade.rater.api_key_env == "OPENAI_API_KEY"
    for name in ("max_tokens", "top_k", "budget_tokens", "api_key_env", "num_tokens", "tokenizer"):
        assert not is_secret_name(name), name
    for name in (
        "api_key",
        "apiKey",
        "API-KEY",
        "x_api_key",
        "access_token",
        "client_secret",
        "password",
        "Authorization",
    ):
        assert is_secret_name(name), name


def test_redaction_covers_every_depth_and_urls_in_text():
    nested = {"a": {"b": [{"ApiKey": KEY, "fine": 1}]}, "url": f"https://me:{KEY}@host:8/v1?token={KEY}&x=1"}
    redacted = redact(nested)
    assert redacted == {"a": {"b": [{"ApiKey": REDACTED, "fine": 1}]}, "url": f"https://host:8/v1?token={REDACTED}&x=1"}
    assert redact({"explain.llm.extra_params.extra_body.api_key": KEY}) == {
        "explain.llm.extra_params.extra_body.api_key": REDACTED
    }
    assert KEY not in redact_text(f"cannot reach http://user:{KEY}@example.com/v1: refused")


def _slipped_through() -> HarnessConfig:
    """A config holding secrets that validation would refuse (model_copy skips validators)."""
    llm = LLMConfig().model_copy(
        update={"api_base": f"http://u:{KEY}@host/v1", "extra_params": {"extra_body": {"api_key": KEY}}}
    )
    config = HarnessConfig()
    return config.model_copy(update={"explain": config.explain.model_copy(update={"llm": llm})})


def test_a_secret_that_slipped_through_reaches_no_mlflow_param_or_config_artifact(tmp_path):
    uri = default_tracking_uri(tmp_path / "mlruns")
    experiment_id = ensure_experiment("secrets", uri)
    config = _slipped_through()
    with variant_run(experiment_id, "key", "planted") as run:
        log_params(variant_params(config))
        log_config_artifact(config)
    client = MlflowClient(uri)
    params = client.get_run(run.run_id).data.params
    assert params["explain.llm.extra_params.extra_body.api_key"] == REDACTED
    assert params["explain.llm.api_base"] == "http://host/v1"
    assert not [name for name, value in params.items() if KEY in value]
    artifact = Path(client.download_artifacts(run.run_id, "config.yaml", str(tmp_path))).read_text()
    assert KEY not in artifact and KEY not in dump_config(config)
    mlflow.set_tracking_uri(None)
