"""The output-centric explainers (vocab-proj, token-change), the one-prompt ensemble (`explain.output.combine`)
and the `ensemble` explainer, through the real LLM layer against the loopback server; the explain stage and the
pre-flight check on the real model."""

from __future__ import annotations

import threading

import pytest

from harness.config import ExplainConfig, parse_config
from harness.errors import ConfigError, SiteError
from harness.explain import (
    Description,
    OutputEvidence,
    TokenChange,
    TokenList,
    generate_descriptions,
    llm_failure,
    make_explainer,
    settings_hash,
)
from harness.explain._ensemble import joined
from harness.llm.client import LLMClient
from harness.stages import SharedStages
from harness.stages._describe import describe_features
from harness.testing.loopback import LoopbackServer
from harness.testing.responders import FadeResponder
from harness.track._checks import check_variant
from tests.configs import tiny_config


def tokens(*texts: str) -> TokenList:
    return TokenList(tuple(range(len(texts))), texts, tuple(float(len(texts) - index) for index in range(len(texts))))


def evidence(feature: int) -> OutputEvidence:
    """VocabProj promotes " apple<feature>" first, TokenChange " pear<feature>"."""
    return OutputEvidence(
        feature,
        vocab_top=tokens(f" apple{feature}", "\n", " fruit"),
        vocab_bottom=tokens(" never", "ward"),
        token_change=TokenChange(
            raised_at_positive=tokens(f" pear{feature}", " plum"),
            lowered_at_positive=tokens(" stone", " rock"),
            raised_at_negative=tokens(" rock", " gravel"),
            lowered_at_negative=tokens(f" pear{feature}", " fig"),
        ),
    )


class Recorder(FadeResponder):
    """The scripted responder, keeping every conversation it answers."""

    def __init__(self) -> None:
        self.seen: list[list[dict]] = []
        self.lock = threading.Lock()

    def __call__(self, messages):
        with self.lock:
            self.seen.append(messages)
        return super().__call__(messages)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def server(recorder):
    with LoopbackServer(responder=recorder) as running:
        yield running


def explain_config(server: LoopbackServer, tmp_path, **sections) -> ExplainConfig:
    llm = {"model": "openai/scripted", "api_base": server.url, "cache_path": str(tmp_path / "llm.sqlite")}
    return ExplainConfig.model_validate({"llm": llm, **sections})


def describe(records, config: ExplainConfig, tmp_path):
    client = LLMClient(config.llm, cache_dir=tmp_path, progress=False)
    try:
        return generate_descriptions(records, config, client)
    finally:
        client.close()


def with_evidence(record, feature: int):
    from dataclasses import replace

    return replace(record, output=evidence(feature))


def test_vocab_proj_shows_the_projection_only_and_the_scripted_explainer_names_its_first_token(
    server, recorder, tmp_path, make_planted_record
):
    records = [with_evidence(make_planted_record(feature, f"tok{feature}"), feature) for feature in (1, 2)]
    table = describe(records, explain_config(server, tmp_path, explainer="vocab-proj"), tmp_path)
    assert table["description"].tolist() == ['the token "apple1"', 'the token "apple2"']
    assert table["example_ids"].tolist() == [[], []]
    user = recorder.seen[0][-1]["content"]
    assert "Promoted tokens: [' apple" in user and "Suppressed tokens: [' never', 'ward']" in user
    assert "'\\n'" in user  # a line-break token is written as an escape, not a line break
    assert "<<" not in user and "pear" not in user  # no examples, no TokenChange


def test_token_change_shows_its_lists_merged_by_direction(server, recorder, tmp_path, make_planted_record):
    records = [with_evidence(make_planted_record(3, "tok3"), 3)]
    table = describe(records, explain_config(server, tmp_path, explainer="token-change"), tmp_path)
    assert table["description"].tolist() == ['the token "pear3"']
    user = recorder.seen[0][-1]["content"]
    assert "Promoted tokens: [' pear3', ' plum', ' fig']" in user
    assert "Suppressed tokens: [' stone', ' rock', ' gravel']" in user and "apple" not in user


def test_combine_shows_examples_and_output_evidence_in_one_prompt(server, recorder, tmp_path, make_planted_record):
    config = explain_config(
        server, tmp_path, prompt={"template": "ensemble"}, output={"combine": ["vocab-proj", "token-change"]}
    )
    explainer = make_explainer(config)
    assert explainer.needs_output_evidence == {"vocab-proj", "token-change"} and explainer.needs_pools
    table = describe([with_evidence(make_planted_record(4, "tok4"), 4)], config, tmp_path)
    assert table["description"].tolist() == ['the token "tok4"']  # the highlights come first for the responder
    user = recorder.seen[0][-1]["content"]
    assert (
        user.index("[INPUT]") < user.index("<<") < user.index("[OUTPUT]") < user.index("apple4") < user.index("pear4")
    )
    assert len(table["example_ids"][0]) == 10


def test_a_record_without_its_evidence_is_a_row_with_an_error(server, tmp_path, make_planted_record):
    table = describe(
        [make_planted_record(5, "tok5")], explain_config(server, tmp_path, explainer="vocab-proj"), tmp_path
    )
    assert table["description"].isna().all() and "no output evidence" in table["error"][0]


def test_the_ensemble_joins_its_members_descriptions_in_order(server, recorder, tmp_path, make_planted_record):
    config = explain_config(server, tmp_path, explainer="ensemble")
    assert make_explainer(config).needs_output_evidence == {"vocab-proj", "token-change"}
    table = describe([with_evidence(make_planted_record(6, "tok6"), 6)], config, tmp_path)
    assert table["description"][0] == 'the token "apple6" / the token "tok6" / the token "pear6"'
    assert table["prompt_tokens"][0] > 0 and len(recorder.seen) == 3


def test_an_ensemble_feature_fails_when_a_member_llm_failed_and_skips_a_member_without_data():
    described = Description(1, "first", prompt_tokens=3, cost_usd=0.5)
    no_examples = Description(1, None, error="the feature has no activating examples")
    failed = Description(1, None, error=llm_failure("timed out"))
    kept = joined(1, [described, no_examples, Description(1, "second", prompt_tokens=2, example_ids=(7,))])
    assert kept.description == "first / second" and kept.prompt_tokens == 5 and kept.example_ids == (7,)
    assert joined(1, [described, failed]).error == failed.error and joined(1, [described, failed]).description is None
    assert joined(1, [no_examples, no_examples]).error == f"{no_examples.error}; {no_examples.error}"


def test_settings_say_what_each_explainer_reads(server, tmp_path):
    base = explain_config(server, tmp_path)
    plain, vocab = make_explainer(base), make_explainer(base.model_copy(update={"explainer": "vocab-proj"}))
    assert plain.needs_output_evidence == frozenset() and not vocab.needs_pools
    assert vocab.settings()["output"] == {"vocab_tokens": 50} and "selection" not in vocab.settings()
    # the TokenChange settings shape only token-change's descriptions
    fewer = base.model_copy(update={"output": base.output.model_copy(update={"token_change_samples": 8})})
    for name, changes in (("vocab-proj", False), ("token-change", True)):
        before = settings_hash(base.model_copy(update={"explainer": name}))
        assert (settings_hash(fewer.model_copy(update={"explainer": name})) != before) == changes, name
    shuffled = base.model_copy(
        update={"explainer": "shuffled", "shuffled": base.shuffled.model_copy(update={"base": "token-change"})}
    )
    assert make_explainer(shuffled).needs_output_evidence == {"token-change"}


def test_settings_that_do_not_fit_fail_at_load(server, tmp_path):
    with pytest.raises(ConfigError, match=r"no \{output_evidence\} placeholder; use the 'ensemble' template"):
        make_explainer(explain_config(server, tmp_path, output={"combine": ["vocab-proj"]}))
    with pytest.raises(
        ConfigError, match=r"shows output evidence but the explainer has none.*explain\.output\.combine"
    ):
        make_explainer(explain_config(server, tmp_path, prompt={"template": "ensemble"}))
    with pytest.raises(ConfigError, match=r"explain\.ensemble\.members\[1\]: unknown explainer 'vocab-projection'"):
        parse_config({"explain": {"explainer": "ensemble", "ensemble": {"members": ["llm", "vocab-projection"]}}})
    with pytest.raises(ConfigError, match="other than ensemble and shuffled"):
        parse_config({"explain": {"ensemble": {"members": ["llm", "ensemble"]}}})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config({"explain": {"output": {"combine": ["vocab-proj", "vocab-proj"]}}})


@pytest.mark.slow
def test_a_site_without_an_output_direction_fails_the_pre_flight_check(tmp_path):
    with LoopbackServer() as running:
        changes = {"explain.explainer": "vocab-proj", "site.module": "model.layers.3.mlp.up_proj"}
        config = parse_config(tiny_config(tmp_path, running.url, changes))
        with pytest.raises(SiteError, match=r"has no defined output direction.*mlp\.act_fn"):
            check_variant(config, SharedStages(progress=False))
        with pytest.raises(SiteError, match="has no defined output direction"):  # `harness explain`: no pre-flight
            describe_features(config, SharedStages(progress=False))
        # TokenChange clamps the feature wherever it is: no output direction needed
        check_variant(parse_config(tiny_config(tmp_path, running.url, {**changes, "explain.explainer": "token-change"})),
                      SharedStages(progress=False))  # fmt: skip


@pytest.mark.slow
def test_the_explain_stage_names_the_token_a_planted_latent_promotes(tmp_path, planted_sae):
    folder, module, _ = planted_sae
    with LoopbackServer() as running:
        site = {"kind": "sae", "module": module, "hook": "output", "sae": {"path": str(folder)}, "features": [0, 1]}
        changes = {
            "site": site,
            "explain.explainer": "ensemble",
            "explain.ensemble.members": ["vocab-proj", "token-change"],
            "explain.output.token_change_samples": 4,
            "corpus.num_samples": 20,
        }
        config = parse_config(tiny_config(tmp_path, running.url, changes))
        table, usage = describe_features(config, SharedStages(progress=False))
    planted, random = table["description"].tolist()
    assert planted == 'the token "banana" / the token "banana"'
    assert "banana" not in random and usage["calls"] == 4
