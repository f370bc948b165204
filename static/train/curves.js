// Training curves from metrics.jsonl records (vla_core.train writes them; backend.training adds one per scored
// checkpoint). Four charts: train and validation loss, learning rate, samples/s (one point per log interval), and
// closed-loop success per checkpoint with its Wilson 95% interval. Pure drawing code: the Train tab streams a job's
// records into a LiveCurves, the Models page draws a model's (or two models' overlaid) with drawCurves.

import { h } from "../common/dom.js";
import { loadPlotly } from "../common/plotly.js";

// chart -> its series: [label, value of a step record]. A step record has a `loss`; a checkpoint record a `checkpoint`.
const SERIES = {
  loss: [["train loss", (r) => r.loss], ["val loss", (r) => r.val_loss]],
  lr: [["lr", (r) => r.lr]],
  speed: [["samples/s", (r) => r.samples_per_s]],
};
const TITLES = { loss: "loss", lr: "learning rate", speed: "samples/s", success: "closed-loop success per checkpoint" };
export const CHARTS = ["loss", "lr", "speed", "success"];
const CONFIG = { displaylogo: false, responsive: true };
const DASH = ["solid", "dot"]; // one run's series apart from another's (compare overlays two runs)

const finite = (v) => typeof v === "number" && Number.isFinite(v);
const isStep = (r) => finite(r.loss) && !("checkpoint" in r);
const isScored = (r) => "checkpoint" in r && finite(r.success);

/** One <div> per chart, with ids `${prefix}-<chart>` (tests read their plotly data). */
export function chartDivs(prefix) {
  return Object.fromEntries(CHARTS.map((c) => [c, h("div", { id: `${prefix}-${c}`, class: "vla-curve" })]));
}

function layout(chart, uirevision) {
  return { title: { text: TITLES[chart], font: { size: 13 }, x: 0.01 }, height: 220, uirevision,
    margin: { l: 50, r: 8, t: 26, b: 30 }, legend: { font: { size: 10 }, orientation: "h", y: -0.25 },
    xaxis: { title: { text: "step", font: { size: 10 } } },
    yaxis: chart === "success" ? { range: [0, 1.05], tickformat: ".0%" } : { type: chart === "loss" ? "log" : "linear" } };
}

/** For each series of `chart`, the (step, value) points among `records`: [{x: [...], y: [...]}, ...]. */
function points(chart, records) {
  return SERIES[chart].map(([, value]) => {
    const x = [], y = [];
    for (const r of records) {
      if (isStep(r) && finite(value(r))) { x.push(r.step); y.push(value(r)); }
    }
    return { x, y };
  });
}

/** The success trace of one run: a point per scored checkpoint, its Wilson interval as asymmetric error bars. */
function successTrace(records, name, dash = "solid") {
  const scored = records.filter(isScored);
  const lo = (r) => (Array.isArray(r.wilson_95) ? r.wilson_95[0] : r.success);
  const hi = (r) => (Array.isArray(r.wilson_95) ? r.wilson_95[1] : r.success);
  return { x: scored.map((r) => r.step), y: scored.map((r) => r.success), name, type: "scatter",
    mode: "lines+markers", line: { dash },
    text: scored.map((r) => `${r.successes ?? "?"}/${r.episodes ?? "?"} (${r.checkpoint})`),
    error_y: { type: "data", symmetric: false, array: scored.map((r) => hi(r) - r.success),
               arrayminus: scored.map((r) => r.success - lo(r)) } };
}

function traces(chart, records, prefix = "", dash = "solid") {
  if (chart === "success") return [successTrace(records, `${prefix}success`, dash)];
  return points(chart, records).map((p, i) => ({ ...p, name: `${prefix}${SERIES[chart][i][0]}`, type: "scatter",
    mode: "lines+markers", marker: { size: 4 }, line: { dash } }));
}

/**
 * Draw every chart for one or more runs (the Models page: one model, or two overlaid to compare).
 * @param {Object<string, HTMLElement>} divs from chartDivs
 * @param {{label: string, records: object[]}[]} runs
 */
export async function drawCurves(divs, runs, uirevision = "") {
  const Plotly = await loadPlotly();
  const named = runs.length > 1;
  for (const chart of CHARTS) {
    const data = runs.flatMap((run, i) => traces(chart, run.records, named ? `${run.label}: ` : "", DASH[i % 2]));
    await Plotly.react(divs[chart], data, layout(chart, uirevision), CONFIG);
  }
}

/** A job's curves while it runs: each poll's new records are appended (Plotly.extendTraces), nothing redrawn. */
export class LiveCurves {
  constructor(divs) {
    this.divs = divs;
    this.records = []; // every record so far (the success chart is redrawn from these: a few points)
    this.drawn = false;
  }

  /** Forget the curves (another job, or this one restarted from a checkpoint: metrics.jsonl was rewritten). */
  reset() {
    this.records = [];
    this.drawn = false;
    for (const div of Object.values(this.divs)) {
      if (window.Plotly) window.Plotly.purge(div);
      div.replaceChildren();
    }
  }

  /** Add the records of one poll (oldest first) to the charts. */
  async append(records, uirevision = "") {
    const Plotly = await loadPlotly();
    this.records.push(...records);
    if (!this.drawn) {
      this.drawn = true;
      return drawCurves(this.divs, [{ label: "", records: this.records }], uirevision);
    }
    for (const chart of ["loss", "lr", "speed"]) {
      const add = points(chart, records);
      if (!add.some((p) => p.x.length)) continue;
      await Plotly.extendTraces(this.divs[chart], { x: add.map((p) => p.x), y: add.map((p) => p.y) },
        add.map((_, i) => i));
    }
    if (records.some(isScored)) {
      await Plotly.react(this.divs.success, traces("success", this.records), layout("success", uirevision), CONFIG);
    }
  }
}
