"""The `harness` command: parse arguments, load the config, call one stage. Nothing imports this module."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness import __version__
from harness.config import HarnessConfig, dump_config, load_config, parse_config, set_dotted
from harness.errors import ConfigError, HarnessError, HarnessWarning, Terminated
from harness.files import check_writable, csv_safe
from harness.score_names import FADE_SCORES, Reason
from harness.secrets import redact_text
from harness.track.paired import ALPHA, MIN_FEATURES

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
    if args.config:
        config = _config_from(args)
    else:
        data: dict[str, Any] = {}
        for key, value in (_parse_override(item) for item in args.set or []):
            data = set_dotted(data, key, value)
        config = parse_config(data, source="(built-in defaults)")
    print(dump_config(config), end="")
    return 0


def cmd_activations(args: argparse.Namespace) -> int:
    from harness.activations import top_examples_report
    from harness.stages import SharedStages

    activation_set = SharedStages().activations(_config_from(args))
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
    from harness.testing.loopback import serve

    serve(host=args.host, port=args.port, responder_name=args.responder, latency_s=args.latency)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.secrets import redact_text
    from harness.track.compare import format_comparison, load_comparison
    from harness.track.experiment import run_experiment
    from harness.track.store import ensure_experiment, experiment_url, resolve_tracking_uri

    config = _config_from(args)
    outcomes = run_experiment(config, force=args.force, progress=not args.quiet, keep_going=args.keep_going)
    if not outcomes:  # another process of an `accelerate launch`: the main one reports
        return 0
    uri = resolve_tracking_uri(config.tracking.uri, config.tracking.store_dir)
    # Read back from the store, as `harness compare` reads it: one comparison, whichever command shows it.
    comparison = load_comparison(
        [config.tracking.experiment], uri, run_ids=[outcome.run_id for outcome in outcomes],
        alpha=config.tracking.paired_alpha, min_features=config.tracking.paired_min_features,
    )  # fmt: skip
    print()
    print(format_comparison(comparison, args.rank_by))
    if len(outcomes) > 1:
        _print_agreement(comparison.table)
    for outcome in outcomes:
        state = (
            "skipped (already finished; --force re-runs it)"
            if outcome.skipped
            else ("resumed and finished" if outcome.resumed else "finished")
        )
        if outcome.llm_failed:
            state += f" PARTIAL: LLM calls failed on features {outcome.llm_failed} (a re-run computes them)"
        print(f"  {outcome.name}: run {outcome.run_id} {state}")
    experiment_id = ensure_experiment(config.tracking.experiment, uri)
    serve = "" if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}, then open "
    print(
        f"\nTracked in experiment {config.tracking.experiment!r} at {redact_text(uri)}.\n"
        f"Browse the runs:      {serve}{experiment_url(uri, experiment_id)}\n"
        f"  (a run's LLM calls: its Traces tab; one feature's: filter on tag harness.feature)\n"
        f"Build the leaderboard: harness leaderboard build --experiment {config.tracking.experiment}"
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from harness.search.study import FAIL_REASON_ATTR, run_search

    config = _config_from(args)
    outcome = run_search(config, n_trials=args.n_trials, timeout_s=args.timeout, progress=not args.quiet)
    failed = (
        f", {outcome.trials_failed} failed (each trial's user attribute {FAIL_REASON_ATTR!r} says why)"
        if outcome.trials_failed
        else ""
    )
    print(f"study {outcome.study_name!r} ({outcome.storage}): {outcome.trials_finished} finished trials in all{failed}")
    for best in outcome.best:
        print(
            f"  best trial {best['trial']}: values {best['values']} params {best['params']} (MLflow run {best['run_id']})"
        )
    print(f"Study plots are on the parent run {outcome.parent_run_id}; trials are nested under it.")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.track.compare import (
        count_failed_runs,
        failed_runs_note,
        format_comparison,
        load_comparison,
        paired_tests,
    )
    from harness.track.store import require_store, resolve_tracking_uri

    uri = require_store(resolve_tracking_uri(args.tracking_uri, args.store_dir))
    weights = dict(_parse_weight(item) for item in args.weight or []) or None
    comparison = load_comparison(
        args.experiment, uri, run_ids=args.run, weights=weights, alpha=args.alpha, min_features=args.min_features
    )
    note = failed_runs_note(count_failed_runs(args.experiment, uri, run_ids=args.run))
    if comparison.table.empty:
        print(f"no finished runs in {', '.join(args.experiment)} at {redact_text(uri)}" + (f"; {note}" if note else ""))
        return 1
    print(format_comparison(comparison, args.rank_by))
    if args.pairs == "all":
        from harness.track.paired import format_pairs

        pairs = paired_tests(
            comparison.ranked(args.rank_by), args.rank_by, comparison.weights, comparison.features,
            pairs="all", alpha=args.alpha, min_features=args.min_features,
        )  # fmt: skip
        print()
        print(f"Paired comparisons of every pair by {args.rank_by}:")
        print(format_pairs(pairs, args.alpha))
    if note:
        print(note)
    _print_agreement(comparison.table)
    return 0


def _print_agreement(table: pd.DataFrame) -> None:
    """The scorers' rank correlation across the table's variants, when there are two scores to pair."""
    from harness.track.agreement import format_agreement, rank_correlations, score_names, scores_with_values

    scores = scores_with_values(table, score_names(table))
    if len(scores) > 1:
        print()
        print(format_agreement(rank_correlations(table, scores)))


def _parse_weight(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError(text)
        return name.strip(), float(value)
    except ValueError:
        raise ConfigError(f"--weight expects SCORE=NUMBER, e.g. clarity=2, got {text!r}") from None


def cmd_leaderboard_build(args: argparse.Namespace) -> int:
    from harness.track.compare import count_failed_runs, failed_runs_note
    from harness.track.store import require_store, resolve_tracking_uri
    from leaderboard import build_site

    uri = require_store(resolve_tracking_uri(args.tracking_uri, args.store_dir))
    check_writable(Path(args.output).resolve().parent, "the leaderboard site (--output)")
    experiments = args.experiment or ["feature-harness"]
    run_ids = _study_trial_run_ids(uri, experiments, args.study) if args.study else None
    weights = dict(_parse_weight(item) for item in args.weight or []) or None
    index = build_site(
        experiments, uri, Path(args.output), rank_by=args.rank_by, weights=weights, title=args.title,
        run_ids=run_ids, progress=not args.quiet, alpha=args.alpha, min_features=args.min_features,
    )  # fmt: skip
    print(f"Leaderboard written: {index.resolve()} (open it in any browser; no server needed)")
    note = failed_runs_note(count_failed_runs(experiments, uri, run_ids=run_ids))
    if note:
        print(note)
    return 0


def _study_trial_run_ids(tracking_uri: str, experiments: list[str], study: str) -> list[str]:
    """The MLflow run ids of a search study's trials (children of its `study <name>` run)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name)) is not None]
    parents = client.search_runs(ids, f"tags.`harness.role` = 'study' and attributes.run_name = 'study {study}'")
    if not parents:
        raise ConfigError(f"no search study {study!r} in experiment(s) {', '.join(experiments)} at {tracking_uri}")
    children = client.search_runs(ids, f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return [run.info.run_id for run in children]


def cmd_explain(args: argparse.Namespace) -> int:
    from harness.stages import SharedStages, describe_features

    config = _config_from(args)
    _check_table_path(Path(args.output), "the descriptions table (--output)")  # before any LLM call
    descriptions, usage = describe_features(config, SharedStages(progress=not args.quiet))
    described = descriptions["description"].notna()
    _write_table(descriptions[described], Path(args.output))  # a failed feature is no row, not an empty one
    print(f"{int(described.sum())} descriptions written to {args.output} (LLM use: {usage or 'none'})")
    if described.all():
        return 0
    reasons = descriptions.loc[~described, "error"].value_counts()
    print(
        f"{int((~described).sum())} of {len(descriptions)} features got no description:\n"
        + "\n".join(f"  {count} x {redact_text(str(reason))}" for reason, count in reasons.head(5).items()),
        file=sys.stderr,
    )
    return 0 if args.keep_going else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from harness.activations import current_processes
    from harness.config import result_fingerprint
    from harness.evaluate.descriptions_io import read_descriptions
    from harness.stages import Alone, SharedStages, run_variant

    config = _config_from(args)
    check_writable(Path(args.output), "FADE's results (--output)")  # before any LLM call
    descriptions = read_descriptions(args.descriptions, format=args.format)
    # Every process of an `accelerate launch` runs its share of FADE; the main one scores the rest and reports.
    leads = current_processes().is_main
    result = run_variant(
        config,
        result_fingerprint(config),
        SharedStages(progress=not args.quiet),
        team=Alone(leads=leads),
        descriptions=descriptions,
        workdir=Path(args.output),
    )
    if not leads:
        return 0
    assert result.per_feature is not None and result.llm_failed is not None
    evaluation = result.evaluation
    columns = ["feature", *FADE_SCORES, *config.scorers.enabled, "description"]
    written = f"scores in {Path(args.output) / 'scores.csv'}"
    if result.scored is not None:
        _write_table(result.scored, Path(args.output) / OTHER_SCORES_FILE)
        written += f", other scorers' in {Path(args.output) / OTHER_SCORES_FILE}"
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(result.per_feature[columns].to_string(index=False))
    print(f"\n{len(evaluation.computed)} computed, {len(evaluation.reused)} reused from {args.output}; {written}")
    failed = sorted({*evaluation.failed, *result.llm_failed})
    if failed:
        first = (
            f"; FADE's first error: {redact_text(str(evaluation.results[evaluation.failed[0]].llm_error))}"
            if evaluation.failed
            else ""
        )
        print(
            f"LLM calls failed on features {failed} (their scores say {Reason.LLM_FAILED}{first}); run the same "
            "command again to compute only these",
            file=sys.stderr,
        )
        return 0 if args.keep_going else 1
    return 0


OTHER_SCORES_FILE = "other_scores.csv"  # `harness evaluate`: the enabled scorers' per-feature table


def _check_table_path(path: Path, what: str) -> None:
    if path.suffix not in (".csv", ".json"):
        raise ConfigError(f"cannot write {path}: use a .csv or .json file name")
    check_writable(path.parent, what)


def _write_table(table: pd.DataFrame, path: Path) -> None:
    """CSV or JSON by suffix, written atomically; text cells that a spreadsheet would run as a formula
    (=, +, -, @ first) defused in a CSV."""
    from harness.files import write_atomic

    _check_table_path(path, str(path))
    if path.suffix == ".json":
        data = table.to_json(orient="records", indent=2).encode()
    else:
        data = table.map(csv_safe).to_csv(index=False).encode()
    write_atomic(path, data)


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
    serve.add_argument("--responder", default="fade", help="scripted responder: 'fade' or 'echo'")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    serve.set_defaults(handler=cmd_llm_serve)

    run = command("run", cmd_run, "run every variant of a config end to end, one MLflow run each (resumable)")
    _add_config_arguments(run)
    run.add_argument("--force", action="store_true", help="re-run variants that already have a finished run")
    run.add_argument("--rank-by", default="aggregate", help="score to rank the summary by (default: aggregate)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--keep-going", action="store_true",
        help="finish a variant whose LLM calls failed on some features, marked partial (a re-run computes them)",
    )  # fmt: skip

    search = command("search", cmd_search, "search pipeline settings with Optuna; each trial is a tracked run")
    _add_config_arguments(search)
    search.add_argument("--n-trials", type=int, help="trials for this worker (default search.n_trials)")
    search.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    search.add_argument("--quiet", action="store_true", help="no progress bars")

    compare = command("compare", cmd_compare, "rank the tracked variants of one or more experiments")
    compare.add_argument("experiment", nargs="+", help="experiment name(s)")
    compare.add_argument("--rank-by", default="aggregate", help="a score name, or 'aggregate' (default)")
    compare.add_argument("--weight", action="append", metavar="SCORE=W", help="aggregate weight (repeatable)")
    compare.add_argument("--run", action="append", help="only these run ids (repeatable)")
    compare.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else mlruns/mlflow.db")
    compare.add_argument("--store-dir", default="mlruns", help="folder of the default sqlite store")
    compare.add_argument(
        "--pairs", choices=("adjacent", "all"), default="adjacent",
        help="paired tests: each variant vs the one ranked above (default), or also every pair (a second table)",
    )  # fmt: skip
    compare.add_argument(
        "--alpha", type=float, default=ALPHA, help=f"level of the Holm-adjusted paired test (default {ALPHA})"
    )
    compare.add_argument(
        "--min-features", type=int, default=MIN_FEATURES,
        help=f"fewest paired features for a test; fewer: no test (default {MIN_FEATURES})",
    )  # fmt: skip

    leaderboard_parser = commands.add_parser("leaderboard", help="the static leaderboard site")
    leaderboard_commands = leaderboard_parser.add_subparsers(
        dest="leaderboard_command", required=True, metavar="ACTION"
    )
    build = leaderboard_commands.add_parser("build", help="write the leaderboard site from tracked runs")
    build.add_argument("--experiment", action="append", help="experiment name (repeatable; default feature-harness)")
    build.add_argument("--study", help="only the trials of this search study")
    build.add_argument("--output", default="leaderboard/site", help="site folder (default leaderboard/site)")
    build.add_argument("--rank-by", default="aggregate", help="a score name, or 'aggregate' (default)")
    build.add_argument("--weight", action="append", metavar="SCORE=W", help="aggregate weight (repeatable)")
    build.add_argument("--title", default="feature-harness leaderboard")
    build.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else mlruns/mlflow.db")
    build.add_argument("--store-dir", default="mlruns", help="folder of the default sqlite store")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument(
        "--alpha",
        type=float,
        default=ALPHA,
        help=f"level of the Holm-adjusted paired test that decides ties (default {ALPHA})",
    )
    build.add_argument(
        "--min-features",
        type=int,
        default=MIN_FEATURES,
        help=f"fewest paired features for a test (default {MIN_FEATURES})",
    )
    build.set_defaults(handler=cmd_leaderboard_build)

    explain = command("explain", cmd_explain, "generate descriptions for the config's features (one variant)")
    _add_config_arguments(explain)
    explain.add_argument("--output", "-o", required=True, help="descriptions table to write (.csv or .json)")
    explain.add_argument(
        "--keep-going", action="store_true", help="exit 0 when some features got no description (they are left out)"
    )
    explain.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = command(
        "evaluate",
        cmd_evaluate,
        "score a descriptions table with FADE (and the scorers in scorers.enabled) on the config's site",
    )
    _add_config_arguments(evaluate)
    evaluate.add_argument("--descriptions", "-d", required=True, help="CSV/JSON (feature, description) or FADE JSON")
    evaluate.add_argument(
        "--format", default="auto",
        help="auto (default), parquet, records, fade, csv, neuronpedia or neuron-explainer",
    )  # fmt: skip
    evaluate.add_argument("--output", "-o", required=True, help="folder for per-feature results (resumable)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument(
        "--keep-going", action="store_true", help="exit 0 when LLM calls failed on some features (scored llm_failed)"
    )
    return parser


_python_warning_format = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Our warnings as `warning: <text>` (their source line means nothing to a user); others as Python shows them."""
    if issubclass(category, HarnessWarning):
        return f"warning: {redact_text(str(message))}\n"
    return _python_warning_format(message, category, filename, lineno, line)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _unexpected(error: Exception) -> str:
    """One line for an error that is not ours: what, where when it names a file, and how to go on."""
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
        where = f" {error.filename}" if error.filename else ""
        return (
            f"cannot write{where}: {error.strerror}; give a writable folder with free space "
            "(finished work is kept, and a re-run resumes from there)"
        )
    return (
        f"{type(error).__name__}: {' '.join(str(error).split())[:500]} (unexpected; --debug shows where, "
        "and a re-run resumes from the finished work)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _format_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.handler(args)
    except HarnessError as error:
        if args.debug:
            raise
        print(f"error: {redact_text(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        stopped = "terminated" if isinstance(error, Terminated) else "interrupted"
        print(f"{stopped}; finished work is cached and a re-run resumes from there", file=sys.stderr)
        return 143 if isinstance(error, Terminated) else 130
    except Exception as error:  # not ours: still one line, without a traceback unless --debug
        if args.debug:
            raise
        print(f"error: {redact_text(_unexpected(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
