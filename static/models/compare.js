// Two models side by side (GET /api/models/{a}/compare/{b}): the config keys that differ, every metric, closed-loop
// success with its Wilson interval (and whether both were measured on the same seeds, when the rates compare
// directly), their evaluations on the same seeds with the difference's interval, and both training curves overlaid
// (A solid, B dotted).

import { get } from "../common/api.js";
import { button, h, refill } from "../common/dom.js";
import { loadPlotly } from "../common/plotly.js";
import { chartDivs, drawCurves } from "../train/curves.js";
import { evaluationPairs } from "./evaluations.js";
import { M, say, show, successText } from "./state.js";

const label = (m) => `${m.name} v${m.version}`;

export function buildCompare() {
  const E = M.el;
  E.cmpA = h("select", { id: "vla-models-compare-a" });
  E.cmpB = h("select", { id: "vla-models-compare-b" });
  E.cmpOut = h("div", { id: "vla-models-compare", class: "vla-models-compare" });
  E.cmpSuccess = h("div", { id: "vla-models-compare-success", class: "vla-curve" });
  E.cmpCurves = chartDivs("vla-models-compare-chart");
  E.cmpBox = h("div", { class: "vla-models-charts", hidden: true }, E.cmpSuccess, ...Object.values(E.cmpCurves));
  return h("fieldset", { class: "vla-models-compare-box" }, h("legend", {}, "Compare two models"),
    h("div", { class: "vla-models-row" }, "A ", E.cmpA, " B ", E.cmpB,
      button("Compare", () => compare(), { id: "vla-models-compare-go" })), E.cmpOut, E.cmpBox);
}

/** Offer every listed model on both sides (keeping the choices still listed; B defaults to the second one). */
export function fillCompare() {
  const E = M.el, opts = () => M.models.map((m) => h("option", { value: m.id }, `${label(m)} (${m.stage})`));
  refill(E.cmpA, opts());
  refill(E.cmpB, opts());
  if (E.cmpA.value === E.cmpB.value && M.models.length > 1) E.cmpB.selectedIndex = 1;
}

/** Compare models `a` and `b` (also the Compare button, with the two picked). */
export async function compare(a = M.el.cmpA.value, b = M.el.cmpB.value) {
  if (!a || !b || String(a) === String(b)) return say("pick two different models to compare", true);
  let c, curves;
  try {
    c = await get(`models/${a}/compare/${b}`);
    curves = await Promise.all([a, b].map((id) => get(`models/${id}/curves`).then((r) => r.records)
      .catch(() => []))); // a model without curves (or with altered files) still compares
  } catch (e) {
    return say(`compare: ${e.message}`, true);
  }
  M.compared = c;
  const E = M.el;
  const rows = (list) => list.map((d) => h("tr", {}, h("td", {}, d.key), h("td", {}, show(d.a)), h("td", {}, show(d.b))));
  const head = h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, `A: ${label(c.a)}`), h("th", {}, `B: ${label(c.b)}`)));
  const loop = c.closed_loop;
  E.cmpOut.replaceChildren(
    h("div", { id: "vla-models-compare-loop", "data-same-seeds": String(loop.same_seeds) },
      h("b", {}, "Closed-loop success: "), `A ${successText(loop.a)}, B ${successText(loop.b)} — ${loop.note}`),
    evaluationPairs(c.evaluations || []),
    h("b", {}, c.config_diff.length ? `Config: ${c.config_diff.length} keys differ` : "Config: identical"),
    h("table", { class: "vla-models-diff", id: "vla-models-config-diff" }, head, h("tbody", {}, ...rows(c.config_diff))),
    h("b", {}, "Metrics"),
    h("table", { class: "vla-models-diff", id: "vla-models-metrics-diff" }, head.cloneNode(true),
      h("tbody", {}, ...rows(c.metrics))));
  E.cmpBox.hidden = false;
  await drawSuccess(c);
  await drawCurves(E.cmpCurves, [{ label: "A", records: curves[0] }, { label: "B", records: curves[1] }],
    `compare-${a}-${b}`);
}

/** A bar per model: its closed-loop success with the Wilson interval as the error bar. */
async function drawSuccess(c) {
  const Plotly = await loadPlotly();
  const sides = [["A", c.a, c.closed_loop.a], ["B", c.b, c.closed_loop.b]].filter(([, , l]) => l &&
    typeof l.success_rate === "number");
  const ci = (l, i) => (Array.isArray(l.wilson_95) ? l.wilson_95[i] : l.success_rate);
  const trace = { type: "bar", x: sides.map(([s, m]) => `${s}: ${label(m)}`), y: sides.map(([, , l]) => l.success_rate),
    error_y: { type: "data", symmetric: false, array: sides.map(([, , l]) => ci(l, 1) - l.success_rate),
               arrayminus: sides.map(([, , l]) => l.success_rate - ci(l, 0)) } };
  const title = sides.length ? "closed-loop success (95% Wilson interval)" : "closed-loop success: not measured";
  await Plotly.react(M.el.cmpSuccess, [trace], { title: { text: title, font: { size: 13 }, x: 0.01 }, height: 220,
    margin: { l: 50, r: 8, t: 26, b: 30 }, yaxis: { range: [0, 1.05], tickformat: ".0%" } },
  { displaylogo: false, responsive: true });
}
