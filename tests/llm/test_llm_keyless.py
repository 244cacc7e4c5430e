"""A self-hosted OpenAI-compatible server needs no key: no api_key_env, no OPENAI_API_KEY, it still answers."""

from harness.config import LLMConfig
from harness.llm import LLMClient
from harness.testing.loopback import LoopbackServer


def test_keyless_openai_compatible_server_is_called_with_a_placeholder_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LoopbackServer() as server:
        config = LLMConfig(model="openai/scripted", api_base=server.url, max_retries=0, cache=False)
        client = LLMClient(config, tmp_path, progress=False)
        [answer] = client.complete_many([[{"role": "user", "content": "describe <<dog>> and <<dog>>"}]])
        client.close()
        assert answer.text == 'the token "dog"'
        assert server.authorizations == {"Bearer no-key"}
