// The Metrics tab (managers read; engineers and admins see the same): is each task's success rising with each model
// version, how often do people step in, how much data do the operators produce, what did training cost. Builds
// itself inside #vla-metrics (webapp/ui.py) over one call, GET /api/metrics (every chart for one set of filters);
// each chart's CSV is GET /api/metrics/<chart>.csv with the same filters. Charts are plotly (vendored, offline).

import { get } from "../common/api.js";
import { button, h, headRow, options } from "../common/dom.js";
import { can, whenSignedIn } from "../common/identity.js";
import { mount, showing } from "../common/mount.js";
import { loadPlotly } from "../common/plotly.js";

const M = (window.vlaMetrics = { data: null, el: {} });
const pct = (x) => (x == null ? "—" : `${(100 * x).toFixed(1)}%`);
const num = (x, d = 1) => (x == null ? "—" : Number(x).toFixed(d));

/** The filter fields' values as a query string (empty ones left out). */
function query() {
  const q = new URLSearchParams();
  for (const [name, input] of Object.entries(M.el.filters)) {
    let v = input.value.trim();
    if (!v) continue;
    if (name === "since" || name === "until") v = `${v}T00:00:00Z`;
    q.set(name, v);
  }
  return q.toString();
}

function csvLink(chart) {
  return h("a", { class: "vla-metrics-csv", href: `/api/metrics/${chart}.csv?${query()}`, download: `metrics-${chart}.csv`,
                  "data-chart": chart }, "CSV");
}

function section(title, chart, ...body) {
  return h("section", { class: "vla-metrics-section", "data-chart": chart },
    h("h3", {}, title, " ", csvLink(chart)), ...body);
}

function table(columns, rows, fmt = {}) {
  const body = h("tbody", {}, ...rows.map((r) => h("tr", {}, ...columns.map((c) => h("td", {}, (fmt[c] ?? String)(r[c]))))));
  return h("table", { class: "vla-metrics-table" }, headRow(columns), body);
}

async function plot(id, traces, layout) {
  const Plotly = await loadPlotly();
  const el = document.getElementById(id);
  if (!el) return;
  await Plotly.react(el, traces, { margin: { t: 24, r: 10, b: 40, l: 50 }, height: 300, legend: { orientation: "h" }, ...layout },
                     { displaylogo: false, responsive: true });
  el.dataset.drawn = String(traces.length);
}

/** Success over time: one line per model version and kind, Wilson 95% error bars; the production model's lines
 *  are thicker, and each promotion is a dashed vertical line. */
function successTraces(rows) {
  const groups = new Map();
  for (const r of rows) {
    const key = `${r.task}${r.colour ? "/" + r.colour : ""} · ${r.model_name ?? "?"} v${r.model_version ?? "?"} · ${r.kind}`;
    if (!groups.has(key)) groups.set(key, { rows: [], production: r.production, kind: r.kind });
    groups.get(key).rows.push(r);
  }
  return [...groups].map(([name, g]) => ({
    name: g.production ? `${name} ★ production` : name, type: "scatter", mode: "lines+markers",
    x: g.rows.map((r) => r.period), y: g.rows.map((r) => r.success_rate),
    line: { width: g.production ? 4 : 1.5, dash: g.kind === "evaluation" ? "dot" : "solid" },
    error_y: { type: "data", symmetric: false, array: g.rows.map((r) => r.wilson_high - r.success_rate),
               arrayminus: g.rows.map((r) => r.success_rate - r.wilson_low) },
    text: g.rows.map((r) => `${r.successes}/${r.rollouts} [${pct(r.wilson_low)}, ${pct(r.wilson_high)}]`),
    hovertemplate: "%{x}: %{y:.1%} (%{text})<extra>%{fullData.name}</extra>",
  }));
}

function byKey(rows, key, x, y, type = "bar") {
  const groups = new Map();
  for (const r of rows) {
    const k = typeof key === "function" ? key(r) : r[key];
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups].map(([name, rs]) => ({ name: String(name), type, x: rs.map((r) => r[x]), y: rs.map((r) => r[y]) }));
}

/** Draw every chart; resolves when plotly has drawn them all. */
function render() {
  const { charts } = M.data;
  const rows = (name) => charts[name].rows;
  const promotions = rows("promotions");
  const shapes = promotions.map((p) => ({ type: "line", xref: "x", yref: "paper", x0: p.at, x1: p.at, y0: 0, y1: 1,
                                         line: { dash: "dash", width: 1, color: "#2e7d32" } }));
  const ttm = rows("time_to_model")[0] ?? {};
  const hours = rows("jobs").reduce((a, r) => [a[0] + r.cpu_hours, a[1] + r.gpu_hours], [0, 0]);
  M.el.body.replaceChildren(
    section("Success over time (Wilson 95% intervals; dotted: evaluation suites, solid: live)", "success",
      h("div", { id: "vla-metrics-success", class: "vla-metrics-plot" }),
      h("p", { class: "vla-metrics-hint" }, promotions.length
        ? `Promoted to production: ${promotions.map((p) => `${p.model_name} v${p.model_version} on ${p.at.slice(0, 10)}`).join(", ")}`
        : "No promotion in this range.")),
    section("Leaderboard per evaluation suite (difference to the production model, Newcombe 95%)", "leaderboard",
      table(["suite", "model_name", "model_version", "rollouts", "success_rate", "wilson_low", "wilson_high",
             "mean_time_to_success_s", "production", "diff_vs_production", "significant"], rows("leaderboard"),
            { success_rate: pct, wilson_low: pct, wilson_high: pct, diff_vs_production: pct, mean_time_to_success_s: num,
              significant: (v) => (v == null ? "—" : v ? "yes" : "no"), production: (v) => (v ? "★" : "") })),
    section("Interventions: share of rollouts someone stepped in, by model", "interventions",
      h("div", { id: "vla-metrics-interventions", class: "vla-metrics-plot" }),
      table(["period", "model_name", "model_version", "rollouts", "intervention_rate", "mean_time_between_interventions_s",
             "help_rate", "false_alarm_share"], rows("interventions"),
            { intervention_rate: pct, help_rate: pct, false_alarm_share: pct, mean_time_between_interventions_s: num })),
    section("Demonstrations per operator", "demos", h("div", { id: "vla-metrics-demos", class: "vla-metrics-plot" }),
      h("p", { class: "vla-metrics-hint" }, `${rows("demos").reduce((a, r) => a + r.hours, 0).toFixed(2)} h recorded, ` +
        `${pct(rows("demos").reduce((a, r) => a + r.labelled, 0) / Math.max(1, rows("demos").reduce((a, r) => a + r.episodes, 0)))} labelled (trash left out)`)),
    section("Dataset growth", "growth", h("div", { id: "vla-metrics-growth", class: "vla-metrics-plot" })),
    section("Labeling throughput", "labeling", table(["period", "user", "events", "active_hours", "events_per_hour"],
      rows("labeling"), { events_per_hour: num })),
    section("Quality flags raised", "quality", table(["flag", "episodes"], rows("quality"))),
    section("Training jobs by status", "jobs", h("div", { id: "vla-metrics-jobs", class: "vla-metrics-plot" }),
      h("p", { class: "vla-metrics-hint" }, `CPU ${hours[0].toFixed(2)} h, GPU ${hours[1].toFixed(2)} h; launch → ` +
        `registered model: ${ttm.models ?? 0} models, median ${num(ttm.median_s / 60)} min, p90 ${num(ttm.p90_s / 60)} min`)),
  );
  return Promise.all([
  plot("vla-metrics-success", successTraces(rows("success")), { yaxis: { range: [0, 1], tickformat: ".0%" }, shapes }),
  plot("vla-metrics-interventions", byKey(rows("interventions"), (r) => `${r.model_name} v${r.model_version}`, "period",
    "intervention_rate", "scatter"), { yaxis: { tickformat: ".0%" } }),
  plot("vla-metrics-demos", byKey(rows("demos"), "operator", "period", "episodes"), { barmode: "stack" }),
  plot("vla-metrics-growth", [{ name: "episodes", type: "scatter", x: rows("growth").map((r) => r.period),
                               y: rows("growth").map((r) => r.total) }], {}),
  plot("vla-metrics-jobs", byKey(rows("jobs"), "status", "period", "jobs"), { barmode: "stack" }),
  ]);
}

async function load() {
  M.el.msg.textContent = "loading…";
  const t0 = performance.now();
  try {
    const plotly = loadPlotly().then(() => { M.plotlyMs = Math.round(performance.now() - t0); }); // beside the request
    M.data = await get(`metrics?${query()}`);
    M.fetchMs = Math.round(performance.now() - t0);
    await plotly;
    await render();
    M.drawMs = Math.round(performance.now() - t0); // from the request to the last chart drawn (bench_metrics reads it)
    M.el.msg.textContent = `drawn in ${M.drawMs} ms`;
    M.el.root.dataset.loaded = String(Date.now());
  } catch (e) {
    M.el.msg.textContent = e.message;
  }
}

function build(root) {
  const input = (name, attrs = {}) => h("input", { name, "aria-label": name, ...attrs });
  const f = (M.el.filters = {
    since: input("since", { type: "date" }), until: input("until", { type: "date" }),
    task: input("task", { placeholder: "task" }), model_name: input("model_name", { placeholder: "model" }),
    operator: input("operator", { placeholder: "operator" }),
    source: h("select", { name: "source", "aria-label": "source" },
      ...options(["", "live", "evaluation", "teleop", "scripted", "intervention"], { "": "any source" })),
    bucket: h("select", { name: "bucket", "aria-label": "bucket" }, ...options(["week", "day", "month"])),
  });
  // The default range: the last 90 days (bench/bench_metrics.py times the charts with it).
  f.since.value = new Date(Date.now() - 90 * 86400e3).toISOString().slice(0, 10);
  M.el.root = root;
  M.el.msg = h("span", { class: "vla-metrics-msg", role: "status" });
  M.el.body = h("div", { class: "vla-metrics-body" });
  const legend = h("p", { class: "vla-metrics-hint" }, "How things are counted: a rollout succeeds by its outcome (the " +
    "operator's verdict when given, else the automatic check; aborted is a failure); rollouts of archived models stay " +
    "under the version they ran; episodes in the trash are left out; jobs count in every status, cancelled included. " +
    "Dates are whole UTC days.");
  root.append(h("div", { class: "vla-metrics-filters" }, ...Object.values(f), button("Apply", load, { id: "vla-metrics-apply" }),
                M.el.msg), legend, M.el.body);
}

mount("vla-metrics", { build, shown: () => { if (showing("vla-metrics")) load(); } });

// Whoever reads metrics (managers above all: it is their tab) gets plotly.js parsed while the page is idle, so
// opening the tab costs the request and the drawing, not ~1 s of loading a 3.5 MB script first.
whenSignedIn(() => {
  if (!can("metrics.read")) return;
  const idle = window.requestIdleCallback ?? ((fn) => setTimeout(fn, 300));
  idle(() => loadPlotly().catch(() => {}), { timeout: 3000 });
});
