// Leaderboard pages: build tables from the page's embedded JSON. Every piece of data goes into the DOM
// through textContent or a property (never innerHTML), and links only take relative paths.
"use strict";

(function () {
  const DASH = "\u2014";

  function pageData() {
    return JSON.parse(document.getElementById("page-data").textContent);
  }

  // Relative paths made by the site builder: letters, digits, . _ ~ % / # - only (so no "javascript:").
  function safeHref(href) {
    return typeof href === "string" && /^[A-Za-z0-9._~%\/#-]+$/.test(href) ? href : null;
  }

  // A link (navigation, never a fetch) into the MLflow UI of a tracking server: web URLs only, no quotes,
  // spaces or angle brackets.
  function safeServerUrl(url) {
    return typeof url === "string" && /^https?:\/\/[A-Za-z0-9._~%\/#?=&:+@-]+$/.test(url) ? url : null;
  }

  function tracesLine(traces, feature) {
    if (!traces) return [];
    const tag = "tag harness.feature = " + feature;
    const url = safeServerUrl(traces.url);
    if (url) {
      const link = el("a", { id: "traces-link", rel: "noopener", text: "this run's LLM calls in MLflow" });
      link.setAttribute("href", url);
      return ["Rater and explainer calls: ", link, " (Traces tab; this feature's: " + tag + ")"];
    }
    return ["Rater and explainer calls: MLflow traces of the run \u2014 " + traces.where + "; this feature's: " + tag];
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "href") {
        const href = safeHref(value);
        if (href) node.setAttribute("href", href);
      } else if (key === "src") {
        const src = safeHref(value);
        if (src) node.setAttribute("src", src);
      } else node.setAttribute(key, String(value));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function number(value, digits) {
    return value === null || value === undefined ? DASH : Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function compact(value) {
    if (value === null || value === undefined) return DASH;
    const units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [size, unit] of units) if (Math.abs(value) >= size) return (value / size).toFixed(1) + unit;
    return String(value);
  }

  function money(value) {
    if (value === null || value === undefined) return DASH;
    return "$" + (value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(2) : value.toPrecision(2));
  }

  // A sortable, filterable table. Columns: {key, label, kind: "number" | "text", first: "asc" | "desc",
  // value(row) -> sort key (null sorts last either way), cell(row) -> Node | string, search(row) -> text}.
  function dataTable(table, columns, rows, options) {
    const state = { column: null, direction: "asc", rows: rows.map((row) => ({ row, tr: null })) };
    const cellClass = (column) => [column.kind === "number" ? "num" : null, column.className].filter(Boolean).join(" ") || null;
    const headRow = el("tr");
    const headers = columns.map((column, index) => {
      const button = el("button", { type: "button", class: "sort", title: column.title || "Sort by " + column.label }, [
        column.label,
        el("span", { class: "arrow", "aria-hidden": "true" }),
      ]);
      const th = el("th", { scope: "col", class: cellClass(column), "data-key": column.key }, [button]);
      button.addEventListener("click", () => {
        const direction = state.column === index ? (state.direction === "asc" ? "desc" : "asc") : column.first || "asc";
        sortBy(index, direction);
      });
      headRow.append(th);
      return th;
    });
    const tbody = el("tbody");
    for (const item of state.rows) {
      item.tr = el("tr", { "data-key": options.rowKey(item.row) },
        columns.map((column) => el("td", { class: cellClass(column) }, [column.cell(item.row)])));
      item.text = columns.map((column) => (column.search ? column.search(item.row) : "")).join(" ").toLowerCase();
      tbody.append(item.tr);
    }
    table.replaceChildren(el("thead", {}, [headRow]), tbody);

    function compare(a, b, kind) {
      if (kind === "number") return a - b;
      return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
    }

    function sortBy(index, direction) {
      const column = columns[index];
      const sign = direction === "asc" ? 1 : -1;
      const keyed = state.rows.map((item) => ({ item, key: column.value(item.row) }));
      keyed.sort((a, b) => {
        const aMissing = a.key === null || a.key === undefined || Number.isNaN(a.key);
        const bMissing = b.key === null || b.key === undefined || Number.isNaN(b.key);
        if (aMissing || bMissing) return aMissing - bMissing;
        return sign * compare(a.key, b.key, column.kind);
      });
      state.rows = keyed.map((entry) => entry.item);
      state.column = index;
      state.direction = direction;
      tbody.append(...state.rows.map((item) => item.tr));
      headers.forEach((th, position) => {
        th.setAttribute("aria-sort", position === index ? (direction === "asc" ? "ascending" : "descending") : "none");
        th.querySelector(".arrow").textContent = position === index ? (direction === "asc" ? " \u25B2" : " \u25BC") : "";
      });
    }

    function filter(keep) {
      let shown = 0;
      for (const item of state.rows) {
        item.tr.hidden = !keep(item.row, item.text);
        if (!item.tr.hidden) shown += 1;
      }
      if (options.count) options.count.textContent = shown + " of " + state.rows.length + " " + options.noun;
    }

    filter(() => true);
    return { sortBy, filter, columnIndex: (key) => columns.findIndex((column) => column.key === key), rows: state.rows };
  }

  function textFilter(input, table, extra) {
    const apply = () => {
      const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      table.filter((row, text) => words.every((word) => text.includes(word)) && (!extra || extra(row)));
    };
    input.addEventListener("input", apply);
    return apply;
  }

  function scoreCell(summary) {
    if (!summary || summary.mean === null) return el("span", { class: "undefined", text: "undefined" });
    const bar = el("span", { class: "ci", "aria-hidden": "true" });
    if (summary.ci_low !== null && summary.ci_high !== null) {
      const range = el("span", { class: "ci-range" });
      range.style.left = (100 * Math.max(0, summary.ci_low)).toFixed(1) + "%";
      range.style.width = (100 * Math.max(0, Math.min(1, summary.ci_high) - Math.max(0, summary.ci_low))).toFixed(1) + "%";
      bar.append(range);
    }
    const mark = el("span", { class: "ci-mean" });
    mark.style.left = (100 * Math.min(1, Math.max(0, summary.mean))).toFixed(1) + "%";
    bar.append(mark);
    const detail = [];
    if (summary.ci_low !== null && summary.ci_high !== null) detail.push("[" + number(summary.ci_low, 2) + ", " + number(summary.ci_high, 2) + "]");
    if (summary.defined !== null) detail.push(Math.round(100 * summary.defined) + "% defined");
    return el("span", { class: "score" }, [el("span", { class: "mean", text: number(summary.mean) }), bar, ...detail.map((text) => el("span", { class: "small", text }))]);
  }

  function capitalised(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function featureScoreCell(score) {
    if (score.value !== null) return number(score.value);
    return el("span", { class: "undefined", title: score.reason || "undefined" }, ["n/a", score.reason ? el("span", { class: "reason", text: score.reason }) : null]);
  }

  // One column per score of a feature: its value, or "n/a" and the reason it is undefined.
  function featureScoreColumns(scores) {
    return scores.map((score) => ({
      key: score, label: capitalised(score), kind: "number", first: "desc", value: (r) => r.scores[score].value, cell: (r) => featureScoreCell(r.scores[score]),
    }));
  }

  // ---- index: the ranked variants ------------------------------------------------------------------
  function indexPage(data) {
    const doc = data.document;
    const criteria = ["aggregate", ...doc.scores];
    let criterion = doc.rank_by;
    const rankCell = (row) => {
      const span = el("span", { class: "rank" });
      const update = () => {
        const rank = row.ranks[criterion];
        span.textContent = rank.rank + (rank.tied ? "=" : "");
        span.title = rank.tied ? "tied: not significantly different from the variant above (paired test, Holm-adjusted)" : "";
        span.classList.toggle("tie", rank.tied);
      };
      span.update = update;
      update();
      return span;
    };
    // The paired comparison with the row above under the current criterion: mean difference and Holm p.
    const pText = (p) => (p < 0.001 ? "<0.001" : p.toFixed(3));
    const vsAboveCell = (row) => {
      const span = el("span", { class: "vs-above" });
      const update = () => {
        const vs = row.ranks[criterion].vs_above;
        span.classList.toggle("untested", Boolean(vs) && vs.p_adjusted === null);
        if (!vs) {
          span.textContent = "";
          span.title = "";
        } else if (vs.p_adjusted === null) {
          span.textContent = "no test";
          span.title = vs.reason || "";
        } else {
          span.textContent = (vs.mean_difference >= 0 ? "+" : "") + vs.mean_difference.toFixed(3) + " \u00b7 p " + pText(vs.p_adjusted);
          span.title = "vs " + vs.reference + ": mean paired difference over " + vs.features + " features; p " +
            pText(vs.p_value) + ", Holm-adjusted " + pText(vs.p_adjusted) + " (" + (vs.significant ? "different" : "tied") + ")";
        }
      };
      span.update = update;
      update();
      return span;
    };
    const columns = [
      { key: "rank", label: "#", kind: "number", first: "asc", className: "rank-col", value: (r) => r.ranks[criterion].rank, cell: rankCell, title: "Rank (ties share a rank)" },
      {
        key: "variant", label: "Variant", kind: "text", first: "asc", value: (r) => r.variant, className: "name",
        cell: (r) => r.partial
          ? el("span", {}, [el("a", { href: r.page, text: r.variant }), el("span", { class: "small partial", title: "finished with --keep-going while some LLM calls failed: those features are left out", text: " (partial)" })])
          : el("a", { href: r.page, text: r.variant }),
        search: (r) => r.variant + " " + r.experiment,
      },
      {
        key: "aggregate", label: "Aggregate", kind: "number", first: "desc", value: (r) => r.aggregate, cell: (r) => scoreCell(r.aggregate_summary),
        title: "The aggregate: per feature, a description's fault counts 0, a feature's leaves it out for every variant; mean over its features less those any variant left out (bar: 95% CI; % of features kept)",
      },
      {
        key: "vs_above", label: "vs above", kind: "number", first: "asc", className: "vs-col", cell: vsAboveCell,
        value: (r) => (r.ranks[criterion].vs_above ? r.ranks[criterion].vs_above.p_adjusted : null),
        title: "Paired test vs the variant ranked just above (this ranking): mean difference and Holm-adjusted p",
      },
      ...doc.scores.map((score) => ({
        key: score, label: capitalised(score) + (doc.flagged_scores[score] ? " (!)" : ""), kind: "number", first: "desc",
        value: (r) => r.scores[score].mean, cell: (r) => scoreCell(r.scores[score]),
        title: doc.flagged_scores[score] ? "Flagged: " + doc.flagged_scores[score] : "Sort by mean " + score + " (bar: 95% CI on 0\u20131)",
      })),
      { key: "cost_usd", label: "Cost", kind: "number", first: "asc", value: (r) => r.cost_usd, cell: (r) => money(r.cost_usd) },
      { key: "tokens", label: "Tokens", kind: "number", first: "asc", value: (r) => r.tokens, cell: (r) => el("span", { title: r.tokens === null ? null : r.tokens.toLocaleString(), text: compact(r.tokens) }) },
      { key: "features", label: "Features", kind: "number", first: "desc", value: (r) => r.features, cell: (r) => r.features === null ? DASH : String(r.features) },
      ...data.settings.map((setting) => ({
        key: setting.key, label: setting.label, kind: "text", first: "asc", value: (r) => r.settings[setting.key],
        cell: (r) => r.settings[setting.key] === null ? DASH : r.settings[setting.key], search: (r) => r.settings[setting.key] || "",
      })),
      {
        key: "run_id", label: "Run", kind: "text", first: "asc", value: (r) => r.run_id, search: (r) => r.run_id,
        cell: (r) => el("code", { title: r.experiment + " / " + r.run_id, text: r.run_id.slice(0, 8) }),
      },
    ];
    const table = dataTable(document.getElementById("variants"), columns, doc.variants, {
      rowKey: (r) => r.run_id, count: document.getElementById("row-count"), noun: "variants",
    });

    const chosen = {};
    const filters = document.getElementById("setting-filters");
    const settings = data.settings.slice();
    if (doc.experiments.length > 1) settings.unshift({ key: "experiment", label: "Experiment" });
    const settingOf = (row, key) => (key === "experiment" ? row.experiment : row.settings[key]);
    const apply = textFilter(document.getElementById("filter-text"), table, (row) =>
      Object.entries(chosen).every(([key, value]) => value === "" || String(settingOf(row, key)) === value));
    for (const setting of settings) {
      const values = [...new Set(doc.variants.map((row) => settingOf(row, setting.key)).filter((v) => v !== null))].sort();
      if (values.length < 2) continue;
      const select = el("select", { "data-setting": setting.key }, [el("option", { value: "", text: "all" }), ...values.map((v) => el("option", { value: v, text: v }))]);
      select.addEventListener("change", () => { chosen[setting.key] = select.value; apply(); });
      filters.append(el("label", {}, [setting.label + " ", select]));
    }

    // Phones start with the setting filters folded away, so the table is on the first screen.
    if (window.matchMedia("(max-width: 640px)").matches) document.getElementById("setting-details").open = false;

    const rankBy = document.getElementById("rank-by");
    for (const name of criteria) rankBy.append(el("option", { value: name, text: name === "aggregate" ? "aggregate (weighted)" : name }));
    rankBy.value = criterion;
    rankBy.addEventListener("change", () => {
      criterion = rankBy.value;
      for (const item of table.rows) {
        item.tr.querySelector(".rank").update();
        item.tr.querySelector(".vs-above").update();
      }
      table.sortBy(table.columnIndex("rank"), "asc");
    });
    table.sortBy(table.columnIndex("rank"), "asc");
    controlsTable(doc);
    labelsTable(doc);
  }

  // Each variant vs its randomized controls, per score: can the score tell them apart?
  function controlsTable(doc) {
    const target = document.getElementById("controls");
    if (!doc.controls.length) {
      target.replaceWith(el("p", { class: "note", text: "No control ran: add a random-model (model.weights: random), random-sae or shuffled variant to see whether each score can tell a variant from its control." }));
      return;
    }
    const pText = (p) => (p === null ? DASH : p < 0.001 ? "<0.001" : p.toFixed(3));
    const columns = [
      { key: "criterion", label: "Score", kind: "text", first: "asc", value: (r) => r.criterion, cell: (r) => r.criterion + (doc.flagged_scores[r.criterion] ? " (!)" : "") },
      { key: "control", label: "Control", kind: "text", first: "asc", value: (r) => r.control, cell: (r) => r.control + " (" + r.test + ")" },
      { key: "variant", label: "Variant", kind: "text", first: "asc", value: (r) => r.variant, cell: (r) => r.variant || DASH },
      { key: "variant_mean", label: "Variant mean", kind: "number", first: "desc", value: (r) => r.variant_mean, cell: (r) => number(r.variant_mean) },
      { key: "control_mean", label: "Control mean", kind: "number", first: "desc", value: (r) => r.control_mean, cell: (r) => number(r.control_mean) },
      { key: "effect", label: "Effect r", kind: "number", first: "desc", value: (r) => r.effect, cell: (r) => r.effect === null ? DASH : (r.effect >= 0 ? "+" : "") + r.effect.toFixed(2), title: "rank-biserial correlation: > 0 when the variant scores higher" },
      { key: "n", label: "Features", kind: "text", first: "asc", value: (r) => r.variant_features + "/" + r.control_features, cell: (r) => r.variant_features + "/" + r.control_features },
      { key: "p_adjusted", label: "p (Holm)", kind: "number", first: "asc", value: (r) => r.p_adjusted, cell: (r) => pText(r.p_adjusted) },
      {
        key: "verdict", label: "Verdict", kind: "text", first: "asc", value: (r) => r.verdict,
        cell: (r) => el("span", { class: r.verdict === "separates" ? "verdict separates" : "verdict no", title: r.note || "", text: r.verdict + (r.note ? " \u2014 " + r.note : "") }),
      },
    ];
    dataTable(target, columns, doc.controls, { rowKey: (r) => r.criterion + ":" + r.control_run_id }).sortBy(0, "asc");
  }

  // Per variant: how many features are well described, badly described, not interpretable, undetermined.
  function labelsTable(doc) {
    const target = document.getElementById("labels");
    const names = doc.variants.length ? Object.keys(doc.variants[0].labels) : [];
    if (!names.length) {
      target.replaceWith(el("p", { class: "note", text: "No per-feature scores to label." }));
      return;
    }
    const columns = [
      { key: "variant", label: "Variant", kind: "text", first: "asc", value: (r) => r.variant, cell: (r) => el("a", { href: r.page, text: r.variant }) },
      ...names.map((name) => ({ key: name, label: capitalised(name), kind: "number", first: "desc", value: (r) => r.labels[name] ?? null, cell: (r) => String(r.labels[name] ?? 0) })),
    ];
    dataTable(target, columns, doc.variants, { rowKey: (r) => r.run_id }).sortBy(0, "asc");
  }

  // ---- variant: its features -------------------------------------------------------------------------
  function variantPage(data) {
    const columns = [
      { key: "feature", label: "Feature", kind: "number", first: "asc", value: (r) => r.feature, cell: (r) => el("a", { href: r.page, text: String(r.feature) }), search: (r) => String(r.feature) },
      {
        key: "description", label: "Description", kind: "text", first: "asc", value: (r) => r.description, className: "text",
        cell: (r) => r.description === null ? el("span", { class: "undefined", text: "no description" }) : el("a", { href: r.page, class: "plain", text: r.description }),
        search: (r) => r.description || "",
      },
      ...featureScoreColumns(data.scores),
      { key: "label", label: "Why", kind: "text", first: "asc", value: (r) => r.label, cell: (r) => r.label === null ? DASH : r.label, search: (r) => r.label || "" },
    ];
    const table = dataTable(document.getElementById("features"), columns, data.features, {
      rowKey: (r) => String(r.feature), count: document.getElementById("row-count"), noun: "features",
    });
    textFilter(document.getElementById("filter-text"), table)();
    table.sortBy(0, "asc");
  }

  // A number the page can format, or null (the tables are untrusted: any JSON value can be there).
  function numeric(value) {
    return typeof value === "number" && Number.isFinite(value) ? value : null;
  }

  // Rows stored as arrays in `fields` order -> objects.
  function records(fields, rows) {
    return rows.map((values) => Object.fromEntries(fields.map((field, index) => [field, values[index]])));
  }

  // ---- features of one variant: a page holds several, the URL's #<feature> picks one ----------------
  function featurePage(data) {
    const shared = data.shared;
    const byFeature = new Map(data.features.map((record) => [String(record.feature), record]));
    const show = () => {
      const wanted = decodeURIComponent(location.hash.slice(1));
      renderFeature(shared, byFeature.get(wanted) || data.features[0]);
      window.scrollTo(0, 0);
    };
    window.addEventListener("hashchange", show);
    show();
  }

  function renderFeature(shared, data) {
    const topExamples = records(shared.example_fields, data.top_examples).map((example) => ({
      ...example, rank: numeric(example.rank), activations: example.activations.map(numeric),
    }));
    const ratedSamples = records(shared.rated_fields, data.rated_samples).map((sample) => ({
      ...sample, factor: numeric(sample.factor), activation: numeric(sample.activation), rating: numeric(sample.rating),
    }));
    document.getElementById("feature-title").textContent = "Feature " + data.feature;
    document.querySelector(".crumbs [aria-current]").textContent = "feature " + data.feature;
    document.title = "Feature " + data.feature + " \u00B7 " + shared.variant.name;
    const description = document.getElementById("description");
    description.replaceChildren(data.description === null ? el("span", { class: "undefined", text: "no description" }) : data.description);
    document.getElementById("explainer").textContent = (data.explainer ? "Explainer: " + data.explainer + " \u00B7 " : "") + "variant " + shared.variant.name;
    document.getElementById("traces").replaceChildren(...tracesLine(shared.traces, data.feature));
    document.getElementById("label").textContent = data.label ? "Why its scores are what they are: " + data.label : "";

    const position = shared.pages.findIndex(([feature]) => feature === data.feature);
    const link = (index, label, rel) => {
      if (index < 0 || index >= shared.pages.length) return el("span", { class: "muted", text: label });
      const [feature, page] = shared.pages[index];
      return el("a", { href: page + "#" + feature, rel, text: label });
    };
    document.getElementById("pager").replaceChildren(
      link(position - 1, "\u2190 previous", "prev"),
      el("a", { href: data.across, id: "across-link", text: "this feature in every variant" }),
      el("a", { href: shared.variant.page, text: "all features of the variant" }),
      link(position + 1, "next \u2192", "next"),
    );

    const cards = document.getElementById("scores");
    cards.replaceChildren();
    for (const score of shared.scores_shown) {
      const value = data.scores[score];
      const children = [el("h3", { text: score })];
      if (value.value !== null) children.push(el("p", { class: "big", text: number(value.value) }));
      else children.push(el("p", { class: "big undefined", text: "undefined" }), el("p", { class: "small reason", text: value.reason || "no reason recorded" }));
      if (score === "faithfulness" && data.faithfulness_factor !== null) children.push(el("p", { class: "small", text: "best steering factor " + data.faithfulness_factor }));
      cards.append(el("div", { class: "card" }, children));
    }

    const examples = document.getElementById("top-examples");
    examples.replaceChildren();
    let peak = 0;
    for (const example of topExamples) for (const a of example.activations) if (a !== null) peak = Math.max(peak, Math.abs(a));
    if (!topExamples.length) examples.append(el("p", { class: "note", text: "No top activating samples were logged for this feature." }));
    for (const example of topExamples) {
      const maxActivation = Math.max(...example.activations.filter((a) => a !== null).map(Math.abs), 0);
      const tokens = el("p", { class: "tokens" });
      example.tokens.forEach((token, index) => {
        const activation = example.activations[index];
        const level = activation === null || peak === 0 ? 0 : Math.round((9 * Math.abs(activation)) / peak);
        tokens.append(el("span", { class: "tok " + (activation < 0 ? "n" : "p") + level, title: activation === null ? "no activation" : "activation " + activation.toPrecision(3), text: token }));
      });
      examples.append(el("div", { class: "example" }, [
        el("div", { class: "example-head" }, [
          el("span", { text: "#" + (example.rank === null ? "?" : example.rank) }),
          el("span", { text: "sample " + (example.sample_id === null ? "?" : example.sample_id) }),
          el("span", { text: "max |activation| " + maxActivation.toPrecision(3) }),
        ]),
        tokens,
      ]));
    }

    const ratingLabel = ["0 absent", "1 partial", "2 present"];
    const columns = [
      { key: "stage", label: "Stage", kind: "text", first: "asc", value: (r) => r.stage, cell: (r) => r.stage || DASH, search: (r) => r.stage || "" },
      { key: "factor", label: "Factor", kind: "number", first: "asc", value: (r) => r.factor, cell: (r) => r.factor === null ? DASH : String(r.factor) },
      { key: "rating", label: "Rating", kind: "number", first: "desc", value: (r) => r.rating, cell: (r) => el("span", { class: "rating r" + r.rating, text: r.rating === null ? "n/a" : ratingLabel[r.rating] || String(r.rating) }), search: (r) => "rating " + r.rating },
      { key: "activation", label: "Activation", kind: "number", first: "desc", value: (r) => r.activation, cell: (r) => number(r.activation) },
      { key: "text", label: "Text", kind: "text", first: "asc", value: (r) => r.text, className: "text", cell: (r) => r.text === null ? DASH : r.text, search: (r) => r.text || "" },
    ];
    const rated = dataTable(document.getElementById("rated"), columns, ratedSamples, {
      rowKey: (r) => r.stage + ":" + r.factor + ":" + r.sample_id, count: document.getElementById("row-count"), noun: "rated samples",
    });
    const filterBox = document.getElementById("filter-text");
    const fresh = filterBox.cloneNode(true);  // drop the previous feature's listener
    fresh.value = "";
    filterBox.replaceWith(fresh);
    textFilter(fresh, rated)();
    rated.sortBy(2, "desc");

    const plots = document.getElementById("feature-plots");
    plots.replaceChildren();
    if (data.plots.length) {
      plots.append(el("h2", { text: "Plots" }));
      const grid = el("div", { class: "grid" });
      for (const plot of data.plots) {
        const image = el("img", { src: plot.src, alt: plot.name, width: plot.width, height: plot.height, loading: "lazy" });
        grid.append(el("figure", {}, [image, el("figcaption", { text: plot.name })]));
      }
      plots.append(grid);
    }
  }

  // ---- one feature across every variant that described it -------------------------------------------
  function siteFeaturePage(data) {
    const columns = [
      { key: "rank", label: "#", kind: "number", first: "asc", className: "rank-col", value: (r) => r.rank, cell: (r) => r.rank + (r.tied ? "=" : "") },
      { key: "variant", label: "Variant", kind: "text", first: "asc", value: (r) => r.variant, className: "name", cell: (r) => el("a", { href: r.variant_page, text: r.variant }) },
      {
        key: "description", label: "Description", kind: "text", first: "asc", value: (r) => r.description, className: "text",
        cell: (r) => el("a", { href: r.page, class: "plain", text: r.description === null ? "no description" : r.description }),
      },
      ...featureScoreColumns(data.scores),
    ];
    dataTable(document.getElementById("across"), columns, data.variants, { rowKey: (r) => r.page }).sortBy(0, "asc");
  }

  const pages = { index: indexPage, variant: variantPage, feature: featurePage, site_feature: siteFeaturePage };
  pages[document.body.dataset.page](pageData());
})();
