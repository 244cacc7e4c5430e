"""Write the static leaderboard site: pages that open from `file://` with their data embedded as JSON.

Browsers refuse `fetch()` of local files, so each page carries its data in a
`<script type="application/json">` block (with `<`, `>` and `&` escaped, so no text can close the block)
and the small `static/leaderboard.js` builds the tables from it with `textContent` only. A strict
Content-Security-Policy allows the site's own script and stylesheet and nothing inline.

The site is built in a temporary folder beside `output_dir` and swapped in at the end, so a failed build
leaves the previous site as it was.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from tqdm.auto import tqdm

from harness.files import csv_safe
from harness.secrets import redact_text
from harness.track.agreement import rank_correlations
from harness.track.compare import AGGREGATE
from harness.track.paired import ALPHA, MIN_FEATURES
from harness.track.store import run_traces_url
from leaderboard._document import SETTINGS, LeaderboardDocument, PairedTest, VariantEntry
from leaderboard._plots import (
    SideSeries,
    box_stats,
    cost_quality_svg,
    distributions_svg,
    radar_svg,
    rank_correlation_svg,
    sides_scatter_svg,
)
from leaderboard._read import (
    EXAMPLE_FIELDS,
    RATED_FIELDS,
    LeaderboardError,
    RankedVariants,
    RunArtifacts,
    read_ranked_variants,
    read_run_artifacts,
    safe_segment,
    site_key,
    table_frame,
)

DEFAULT_TITLE = "Feature description leaderboard"
SITE_MARKER = ".leaderboard-site"
RADAR_VARIANTS = 8
# Consecutive features of a variant share a page (picked by the URL's #feature): tens of thousands of tiny
# files cost more to create and delete than to parse a few hundred kB more.
FEATURE_PAGE_BYTES = 400_000
FEATURE_PAGE_COUNT = 50


def page_groups(sizes: Sequence[int], max_bytes: int, max_count: int) -> list[range]:
    """Consecutive groups of items for one page each: a group closes before it would pass `max_bytes` of
    data or `max_count` items (an item bigger than `max_bytes` gets a page of its own)."""
    groups, start, total = [], 0, 0
    for index, size in enumerate(sizes):
        if index > start and (total + size > max_bytes or index - start >= max_count):
            groups.append(range(start, index))
            start, total = index, 0
        total += size
    if sizes:
        groups.append(range(start, len(sizes)))
    return groups


def embed_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` block: no `<`, `>` or `&` left, so `</script>` and
    `<!--` inside strings cannot end the block or start a comment."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_site(
    experiment_names: Sequence[str],
    tracking_uri: str,
    output_dir: Path,
    *,
    rank_by: str = AGGREGATE,
    weights: Mapping[str, float] | None = None,
    title: str = DEFAULT_TITLE,
    run_ids: Sequence[str] | None = None,
    progress: bool = True,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> Path:
    """Read the finished variant runs of the experiments and write the static site; returns its index.html.

    Args:
        experiment_names: MLflow experiments whose variant (and trial) runs are ranked together.
        tracking_uri: the MLflow store, e.g. `sqlite:///mlruns/mlflow.db`.
        output_dir: the site folder; replaced as a whole when it holds an earlier leaderboard site.
        rank_by: "aggregate" (weighted mean of score means) or one score name; the page can switch.
        weights: score -> weight of the aggregate (default: equal weights over the scores present).
        title: shown on every page.
        run_ids: keep only these runs (e.g. the trials of one search study).
        progress: show a progress bar over the runs.
        alpha, min_features: the paired test that decides ties (Holm-adjusted level; fewest paired features).
    """
    output_dir = Path(output_dir)
    _check_replaceable(output_dir)
    ranked = read_ranked_variants(
        experiment_names, tracking_uri, run_ids=run_ids, rank_by=rank_by, weights=weights, alpha=alpha,
        min_features=min_features,
    )  # fmt: skip
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(output_dir)
    building = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.building-{os.getpid()}-", dir=output_dir.parent))
    try:
        with _cyclic_gc_paused():
            _SiteWriter(
                building, ranked, tracking_uri, list(experiment_names), rank_by, title,
                PairedTest(alpha=alpha, min_features=min_features),
            ).write(progress)  # fmt: skip
        building.chmod(0o755)
        _swap_in(building, output_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return output_dir / "index.html"


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Reading and regrouping millions of table cells allocates containers that form no cycles, yet the
    cyclic collector rescans the growing heap again and again: pausing it cuts a build's CPU time by ~40%.
    Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_replaceable(output_dir: Path) -> None:
    if output_dir.exists() and not (
        output_dir.is_dir() and (not any(output_dir.iterdir()) or (output_dir / SITE_MARKER).is_file())
    ):
        raise LeaderboardError(
            f"{output_dir} exists and is not a leaderboard site built by harness (no {SITE_MARKER} file); "
            "choose a new or empty folder for --output, or delete it yourself"
        )


def _remove_abandoned_builds(output_dir: Path) -> None:
    """The half-written sites of earlier builds of `output_dir` whose process is gone (killed): each building
    folder is named after its builder's process id."""
    for folder in output_dir.parent.glob(f".{output_dir.name}.building-*"):
        pid = folder.name.removeprefix(f".{output_dir.name}.building-").split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _swap_in(building: Path, output_dir: Path) -> None:
    if not output_dir.exists():
        os.replace(building, output_dir)
        return
    previous = output_dir.parent / f".{output_dir.name}.previous-{uuid.uuid4().hex[:8]}"
    os.replace(output_dir, previous)
    try:
        os.replace(building, output_dir)
    except BaseException:
        os.replace(previous, output_dir)  # put the old site back
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _write_file(path: Path, text: str) -> None:
    """Write one page. The whole site is built in a temporary folder and swapped in at the end, so pages
    need no atomic write of their own; `os.open` is used because `open()` costs several times more per
    file, and a site has tens of thousands of pages."""
    data = text.encode("utf-8", errors="replace")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _site_folder(site: str) -> str:
    """Folder of the cross-variant feature pages of one feature site (see `site_key`)."""
    return f"features/{hashlib.sha1(site.encode()).hexdigest()[:12]}"


class _SiteWriter:
    """Writes every page of one site; holds only what the index and cross-variant pages need across runs."""

    def __init__(
        self,
        root: Path,
        ranked: RankedVariants,
        tracking_uri: str,
        experiments: list[str],
        rank_by: str,
        title: str,
        paired_test: PairedTest | None = None,
    ) -> None:
        self.root = root
        self.ranked = ranked
        self.tracking_uri = tracking_uri
        self.experiments = experiments
        self.rank_by = rank_by
        self.title = title
        self.paired_test = paired_test or PairedTest()
        environment = _environment()
        self.templates = {
            name: environment.get_template(f"{name}.html") for name in ("index", "variant", "feature", "site_feature")
        }
        self.box_stats: dict[str, list] = {score: [] for score in ranked.scores}
        # site key -> feature -> one summary per variant that described it (for the cross-variant pages)
        self.across: dict[str, dict[int, list[dict[str, Any]]]] = {}

    def write(self, progress: bool) -> None:
        (self.root / "static").mkdir()
        for asset in (resources.files("leaderboard") / "static").iterdir():  # works for any install layout
            (self.root / "static" / asset.name).write_bytes(asset.read_bytes())
        staging = self.root / ".staging"
        for entry in tqdm(self.ranked.entries, desc="leaderboard: runs", unit="run", disable=not progress):
            artifacts = read_run_artifacts(entry.run_id, self.tracking_uri, staging / safe_segment(entry.run_id))
            self._write_variant(entry, artifacts)
        shutil.rmtree(staging, ignore_errors=True)
        self._write_across_pages()
        self._write_index()
        (self.root / SITE_MARKER).write_text(
            "built by `harness leaderboard build`; the whole folder is replaced on rebuild\n"
        )

    def _render(
        self, template: str, path: str, depth: int, crumbs: list[tuple[str, str | None]], data: Any, **context: Any
    ) -> None:
        """Render a page `depth` folders below the root; `data` is embedded (already embedded if Markup)."""
        root = "../" * depth
        html = self.templates[template].render(
            page=template,
            root=root,
            title=self.title,
            crumbs=[(label, href and root + href) for label, href in crumbs],
            data=data if isinstance(data, Markup) else embed_json(data),
            **context,
        )
        _write_file(self.root / path, html)

    def _write_variant(self, entry: VariantEntry, artifacts: RunArtifacts) -> None:
        folder = entry.page.rsplit("/", 1)[0]
        for plot in [*artifacts.plots, *(plot for plots in artifacts.feature_plots.values() for plot in plots)]:
            target = self.root / folder / "plots" / plot.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifacts.plots_dir / plot.path, target)
        params = self.ranked.params[entry.run_id]
        site = site_key(params)
        labels = self.ranked.labels.get(entry.run_id, {})
        features = sorted(
            ({**record, "label": labels.get(record["feature"])} for record in artifacts.features),
            key=lambda record: record["feature"],
        )
        for score in self.ranked.scores:
            self.box_stats[score].append(box_stats([record["scores"][score]["value"] for record in features]))
        site_folder = _site_folder(site)
        details = [
            embed_json(
                {
                    **record,
                    "top_examples": artifacts.top_examples.get(record["feature"], []),
                    "rated_samples": artifacts.rated_samples.get(record["feature"], []),
                    "plots": [
                        {
                            "src": "../plots/" + quote(plot.path),
                            "name": plot.path.rsplit("/", 1)[-1],
                            "width": plot.width,
                            "height": plot.height,
                        }
                        for plot in artifacts.feature_plots.get(record["feature"], [])
                    ],
                    "across": f"../../../{site_folder}/{record['feature']}.html",
                }
            )
            for record in features
        ]
        pages = [
            (f"{features[group.start]['feature']}-{features[group.stop - 1]['feature']}.html", group)
            for group in page_groups([len(detail) for detail in details], FEATURE_PAGE_BYTES, FEATURE_PAGE_COUNT)
        ]
        page_of = {features[index]["feature"]: name for name, group in pages for index in group}
        crumbs = [(self.title, "index.html"), (entry.variant, None)]
        self._render(
            "variant",
            f"{folder}/index.html",
            2,
            crumbs,
            {
                "scores": self.ranked.scores,
                "features": [
                    {**record, "page": f"features/{page_of[record['feature']]}#{record['feature']}"}
                    for record in features
                ],
            },
            entry=entry,
            scores=self.ranked.scores,
            settings=SETTINGS,
            site=site,
            rank_by=self.rank_by,
            params=sorted(params.items()),
            metrics=sorted(self.ranked.metrics[entry.run_id].items()),
            plots=[
                {"src": "plots/" + quote(plot.path), "name": plot.path, "width": plot.width, "height": plot.height}
                for plot in artifacts.plots
            ],
        )
        shared = embed_json(
            {
                "variant": {"name": entry.variant, "run_id": entry.run_id, "page": "../index.html"},
                "traces": self._traces_link(entry.run_id),
                "scores_shown": self.ranked.scores,
                "example_fields": EXAMPLE_FIELDS,
                "rated_fields": RATED_FIELDS,
                "pages": [[record["feature"], page_of[record["feature"]]] for record in features],
            }
        )
        crumbs = [(self.title, "index.html"), (entry.variant, f"{folder}/index.html")]
        for name, group in pages:
            first, last = features[group.start]["feature"], features[group.stop - 1]["feature"]
            self._render(
                "feature",
                f"{folder}/features/{name}",
                3,
                [*crumbs, (f"features {first}–{last}", None)],
                Markup(f'{{"shared":{shared},"features":[{",".join(details[index] for index in group)}]}}'),
                first=first,
                last=last,
                variant=entry.variant,
            )
        for record in features:
            self.across.setdefault(site, {}).setdefault(record["feature"], []).append(
                {
                    "variant": entry.variant,
                    "rank": entry.rank,
                    "tied": entry.tied,
                    "description": record["description"],
                    "scores": {score: record["scores"][score] for score in self.ranked.scores},
                    "page": f"../../{folder}/features/{page_of[record['feature']]}#{record['feature']}",
                    "variant_page": f"../../{folder}/index.html",
                }
            )

    def _traces_link(self, run_id: str) -> dict[str, Any] | None:
        """Where the run's LLM-call traces are (docs/tracking.md): a link into the MLflow UI when the store is a
        server, else where to find them (`mlflow ui` on the store); None when the run recorded none."""
        from mlflow import MlflowClient

        try:
            client = MlflowClient(self.tracking_uri)
            experiment_id = client.get_run(run_id).info.experiment_id
            traced = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=1, include_spans=False)
        except Exception:  # a store without traces support, or traces unreadable: no link, the page still builds
            return None
        if not traced:
            return None
        if self.tracking_uri.startswith(("http://", "https://")):
            return {"url": run_traces_url(self.tracking_uri, experiment_id, run_id), "where": None}
        where = f"mlflow ui --backend-store-uri {redact_text(self.tracking_uri)}: experiment {experiment_id}, run {run_id}, Traces tab"
        return {"url": None, "where": where}

    def _write_across_pages(self) -> None:
        for site, by_feature in self.across.items():
            site_folder = _site_folder(site)
            for feature, rows in by_feature.items():
                self._render(
                    "site_feature",
                    f"{site_folder}/{feature}.html",
                    2,
                    [(self.title, "index.html"), (f"feature {feature}", None)],
                    {"feature": feature, "site": site, "scores": self.ranked.scores, "variants": rows},
                    feature=feature,
                    site=site,
                )

    def _write_index(self) -> None:
        entries, scores = self.ranked.entries, self.ranked.scores
        document = LeaderboardDocument(
            title=self.title,
            generated_at=datetime.now(timezone.utc),
            experiments=self.experiments,
            rank_by=self.rank_by,
            weights=self.ranked.weights,
            scores=scores,
            variants=entries,
            paired_test=self.paired_test,
            controls=self.ranked.controls,
            flagged_scores=self.ranked.flags,
            score_conventions=self.ranked.conventions,
            input_output=self.ranked.sides,
            scorer_agreement=rank_correlations(pd.DataFrame(list(self.ranked.metrics.values())), scores)
            if len(scores) > 1
            else None,
        )
        text = document.model_dump_json(indent=1)
        LeaderboardDocument.model_validate_json(text)  # what other tools read must parse back
        (self.root / "leaderboard.json").write_text(text, encoding="utf-8")
        (self.root / "leaderboard.schema.json").write_text(
            json.dumps(LeaderboardDocument.model_json_schema(), indent=1), encoding="utf-8"
        )
        table_frame(entries, scores, self.rank_by).map(csv_safe).to_csv(self.root / "leaderboard.csv", index=False)
        self._render(
            "index",
            "index.html",
            0,
            [(self.title, None)],
            {
                "document": document.model_dump(mode="json"),
                "settings": [{"key": key, "label": label} for key, label, _ in SETTINGS],
            },
            document=document,
            plots=self._index_plots(document),
        )

    def _index_plots(self, document: LeaderboardDocument) -> dict[str, Any]:
        entries, scores = self.ranked.entries, self.ranked.scores
        names = [entry.variant for entry in entries]
        top = entries[:RADAR_VARIANTS]
        quality_label = AGGREGATE if self.rank_by == AGGREGATE else f"{self.rank_by} mean"

        def quality(entry: VariantEntry) -> float | None:
            return entry.aggregate if self.rank_by == AGGREGATE else entry.scores[self.rank_by].mean

        costed = [entry for entry in entries if entry.cost_usd is not None and quality(entry) is not None]
        # Every variant free (local models; backends litellm has no price for): tokens are the cost left to compare.
        by_tokens = bool(costed) and all(e.cost_usd == 0 and e.tokens is not None for e in costed)
        costs = [float(e.tokens if by_tokens else e.cost_usd) for e in costed]
        return {
            "radar": Markup(
                radar_svg(scores, [e.variant for e in top], [[e.scores[s].mean for s in scores] for e in top])
            ),
            "radar_legend": [entry.variant for entry in top],
            "distributions": [Markup(distributions_svg(score, names, self.box_stats[score])) for score in scores],
            "scatter": Markup(
                cost_quality_svg(
                    [e.variant for e in costed],
                    costs,
                    [quality(e) for e in costed],
                    quality_label,
                    "tokens" if by_tokens else "USD",
                )
            )
            if costed
            else None,
            "scatter_left_out": len(entries) - len(costed),
            "scatter_by_tokens": by_tokens,
            "quality_label": quality_label,
            "agreement": Markup(rank_correlation_svg(document.scorer_agreement)) if document.scorer_agreement else None,
            "sides": self._side_plots(document),
        }

    def _side_plots(self, document: LeaderboardDocument) -> list[Markup]:
        """The per-feature scatter of each input/output pair some variant defines a correlation for."""
        names = {entry.run_id: entry.variant for entry in document.variants}
        pairs = dict.fromkeys(
            (item.input_score, item.output_score) for item in document.input_output if item.rho is not None
        )
        plots = []
        for first, second in pairs:
            series = []
            for item in document.input_output:
                frame = self.ranked.side_values.get(item.run_id)
                if (item.input_score, item.output_score) != (first, second) or frame is None:
                    continue
                both = frame[[first, second]].apply(pd.to_numeric, errors="coerce").dropna()
                series.append(SideSeries(names.get(item.run_id, item.variant), both[first].tolist(),
                                         both[second].tolist(), item.rho, item.features))  # fmt: skip
            plots.append(Markup(sides_scatter_svg(first, second, series)))
        return plots
