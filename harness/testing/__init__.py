"""Test doubles, not part of the harness's API: an OpenAI-compatible loopback LLM server with fault injection
(`harness.testing.loopback`) and the scripted responders that know our prompts (`harness.testing.responders`).

The test suite, the benchmarks and `harness llm serve` (a dry run without an LLM) use them; nothing in a
real run does. They answer like an LLM at the HTTP level, so the code under test is the real client.
"""
