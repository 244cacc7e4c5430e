"""The `harness` command: parse arguments, load the config, call one stage. Nothing imports this module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from harness import __version__
from harness.config import HarnessConfig, dump_config, load_config
from harness.errors import ConfigError, HarnessError

# litellm fetches its price map from the network at import unless told otherwise; we work offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key (e.g. site.features=[1,2]), got {text!r}")
    return key.strip(), yaml.safe_load(raw)


def _config_from(args: argparse.Namespace) -> HarnessConfig:
    overrides = dict(_parse_override(item) for item in args.set or [])
    return load_config(args.config, overrides)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value by its dotted key, e.g. --set corpus.num_samples=200 (repeatable)",
    )


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _config_from(args) if args.config else HarnessConfig()
    print(dump_config(config), end="")
    return 0


def cmd_activations(args: argparse.Namespace) -> int:
    from harness.activations import extract_activations, top_examples_report
    from harness.corpus import load_corpus
    from harness.model import load_subject_model
    from harness.sites import build_site

    config = _config_from(args)
    loaded = load_subject_model(config.model)
    corpus = load_corpus(config.corpus, loaded.tokenizer)
    site = build_site(config.site, loaded)
    activation_set = extract_activations(loaded, site, corpus, config.activations)
    print(top_examples_report(activation_set, n_features=args.features, n_examples=args.examples))
    return 0


def cmd_model_modules(args: argparse.Namespace) -> int:
    from harness.config import SubjectModelConfig
    from harness.model import load_subject_model

    loaded = load_subject_model(SubjectModelConfig(name=args.model))
    for name, module in loaded.model.named_modules():
        if name and (args.filter is None or args.filter in name):
            print(f"{name}\t{type(module).__name__}")
    return 0


def cmd_llm_serve(args: argparse.Namespace) -> int:
    from harness.llm.loopback import serve

    serve(host=args.host, port=args.port, responder_name=args.responder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Compare automated-interpretability pipelines: extract feature activations, generate "
        "descriptions, score them with FADE.",
    )
    parser.add_argument("--version", action="version", version=f"feature-harness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    config_parser = commands.add_parser("config", help="inspect configs")
    config_commands = config_parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print a config with every default filled in")
    show.add_argument("config", nargs="?", help="YAML config file (default: the built-in defaults)")
    show.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a dotted key")
    show.set_defaults(handler=cmd_config_show)

    activations = command(
        "activations", cmd_activations, "extract activations (cached) and print top-activating samples"
    )
    _add_config_arguments(activations)
    activations.add_argument("--features", type=int, default=5, help="how many features to print (default 5)")
    activations.add_argument("--examples", type=int, default=5, help="samples per feature (default 5)")

    model_parser = commands.add_parser("model", help="inspect the subject model")
    model_commands = model_parser.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    modules = model_commands.add_parser("modules", help="list module paths usable as feature sites")
    modules.add_argument("--model", default="smollm2-135m", help="embedded name, hub id or local folder")
    modules.add_argument("--filter", help="only paths containing this text, e.g. 'layers.3.mlp'")
    modules.set_defaults(handler=cmd_model_modules)

    llm_parser = commands.add_parser("llm", help="LLM utilities")
    llm_commands = llm_parser.add_subparsers(dest="llm_command", required=True, metavar="ACTION")
    serve = llm_commands.add_parser(
        "serve", help="run the scripted OpenAI-compatible loopback server (offline dry runs)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--responder", default="keyword", help="scripted responder name")
    serve.set_defaults(handler=cmd_llm_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except HarnessError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is cached and a re-run resumes from there", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
