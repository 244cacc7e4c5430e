"""No key leaks from the provider's own variable (issue #30): without llm.api_key_env litellm sends
OPENAI_API_KEY itself; a backend reflects that key into every answer (descriptions, synthetic samples), and
later answers a 401 that echoes it. The key is grepped for across stdout, stderr, the MLflow store, the
caches, the artifacts and the leaderboard: nowhere. Real model, real sqlite store, the loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from configs import tiny_config, write_config
from harness.cli import main
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.testing.responders import FadeResponder
from harness.track.runs import ERROR_TAG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("own_store")]

IMPLICIT_KEY = "sk-implicit-run-3e8b1f6a9c2d4e7f"


def _reflected(value):
    """Every string of an answer with the key appended (a JSON answer stays JSON)."""
    if isinstance(value, str):
        return f"{value} {IMPLICIT_KEY}"
    if isinstance(value, list):
        return [_reflected(item) for item in value]
    if isinstance(value, dict):
        return {key: _reflected(item) for key, item in value.items()}
    return value


def reflecting_responder():
    fade = FadeResponder()

    def respond(messages):
        answer = fade(messages)
        if not isinstance(answer, str):
            return answer
        try:
            return json.dumps(_reflected(json.loads(answer)))
        except ValueError:
            return _reflected(answer)

    return respond


def _config(folder: Path, server_url: str, temperature: float) -> str:
    """Relative store and cache: the test runs in `folder`."""
    data = tiny_config(
        folder,
        server_url,
        {
            "llm.temperature": temperature,
            "activations.cache_dir": "cache",
            "tracking.experiment": "keys",
            "tracking.store_dir": "mlruns",
        },
    )
    return str(write_config(folder, data, f"config-{temperature}.yaml"))


def test_the_implicit_key_reflected_and_echoed_is_in_no_output(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", IMPLICIT_KEY)
    with LoopbackServer(responder=reflecting_responder()) as server:
        assert main(["run", _config(tmp_path, server.url, 0.0), "--quiet"]) == 0
        server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))  # a 401 echoing the Authorization header
        assert main(["run", _config(tmp_path, server.url, 0.5), "--quiet"]) == 2
        assert f"Bearer {IMPLICIT_KEY}" in server.authorizations  # the key was sent, by litellm's fallback
    site = tmp_path / "site"
    assert main(["leaderboard", "build", "--experiment", "keys", "--output", str(site), "--quiet"]) == 0
    captured = capfd.readouterr()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    [failed] = [run for run in client.search_runs([client.get_experiment_by_name("keys").experiment_id])
                if run.info.status == "FAILED"]  # fmt: skip
    assert "HTTP 401" in failed.data.tags[ERROR_TAG] and "[redacted]" in failed.data.tags[ERROR_TAG]
    assert "HTTP 401" in captured.err and "[redacted]" in captured.err
    descriptions = (tmp_path / "cache" / "runs").glob("*/fade/features/*/result.json")
    assert any("[redacted]" in json.loads(path.read_text())["description"] for path in descriptions)
    assert IMPLICIT_KEY not in captured.out + captured.err
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".html" for path in files) and any(path.name == "mlflow.db" for path in files)
    leaking = [str(path) for path in files if IMPLICIT_KEY.encode() in path.read_bytes()]
    assert leaking == []
