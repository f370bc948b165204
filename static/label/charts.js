// The player's charts: the episode's state and action signals over frames (plotly.js, served from /vendor by the
// app, loaded the first time the tab is shown), a red playhead line that follows the player, click to seek. A policy
// rollout also gets its uncertainty over frames, with the stretches an operator drove shaded.

import { h } from "../common/dom.js";
import { seek } from "./player.js";
import { L, say } from "./state.js";

const PLOTLY_URL = "/vendor/plotly/plotly.min.js"; // a classic script (UMD): it sets window.Plotly
let plotlyLoading = null;

export function buildCharts() {
  const E = L.el;
  E.charts.state = h("div", { id: "vla-label-chart-state", class: "vla-label-chart" });
  E.charts.action = h("div", { id: "vla-label-chart-action", class: "vla-label-chart" });
  // In E.charts (so the playhead follows) only while an episode with an uncertainty signal is shown.
  E.uncertaintyChart = h("div", { id: "vla-label-chart-uncertainty", class: "vla-label-chart", hidden: true });
  return [E.charts.state, E.charts.action, E.uncertaintyChart];
}

/** Runs of operator frames as shaded rectangles behind the uncertainty trace. */
function interventionShapes(flags) {
  const shapes = [];
  let start = null;
  (flags || []).concat([false]).forEach((f, i) => {
    if (f && start === null) start = i;
    if (!f && start !== null) {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: start - 0.5, x1: i - 0.5, y0: 0, y1: 1,
                    fillcolor: "rgba(255, 160, 0, 0.25)", line: { width: 0 }, layer: "below" });
      start = null;
    }
  });
  return shapes;
}

export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  plotlyLoading ??= new Promise((resolve, reject) => {
    const s = h("script", { src: PLOTLY_URL });
    s.onload = () => resolve(window.Plotly);
    s.onerror = () => { plotlyLoading = null; s.remove(); reject(new Error(`could not load ${PLOTLY_URL}`)); };
    document.head.append(s);
  });
  return plotlyLoading;
}

const playheadShape = (k) => ({ type: "line", xref: "x", yref: "paper", x0: k, x1: k, y0: 0, y1: 1,
                                line: { color: "#d32f2f", width: 2 } });

export async function drawCharts() {
  const sig = L.signals, ep = L.ep;
  if (!sig || !ep) return clearCharts();
  let Plotly;
  try {
    Plotly = await loadPlotly();
  } catch (e) {
    return say(`charts: ${e.message}`, true);
  }
  if (L.signals !== sig || !L.el.root) return; // another episode was opened meanwhile
  const x = sig.timestamps.map((_, i) => i);
  const charts = [["state", sig.state_names, sig.state], ["action", sig.action_names, sig.action]]; // rows: (T, D)
  const E = L.el;
  if (sig.uncertainty) {
    E.charts.uncertainty = E.uncertaintyChart;
    E.uncertaintyChart.hidden = false;
    charts.push(["uncertainty", ["policy uncertainty"], sig.uncertainty.map((u) => [u])]);
  } else {
    delete E.charts.uncertainty;
    if (window.Plotly) window.Plotly.purge(E.uncertaintyChart);
    E.uncertaintyChart.hidden = true;
  }
  for (const [key, names, rows] of charts) {
    const div = L.el.charts[key];
    const traces = names.map((name, j) => ({ x, y: rows.map((r) => r[j]), name, type: "scatter", mode: "lines",
                                             line: { width: 1.5 } }));
    const layout = { title: { text: key, font: { size: 13 }, x: 0.01 }, height: 230, hovermode: "x",
      margin: { l: 44, r: 8, t: 26, b: 28 }, legend: { font: { size: 10 } }, uirevision: ep.id,
      xaxis: { range: [0, Math.max(1, x.length - 1)], zeroline: false },
      shapes: [playheadShape(L.frame), ...(key === "uncertainty" ? interventionShapes(sig.intervention) : [])] };
    await Plotly.react(div, traces, layout, { displaylogo: false, responsive: true });
    div.playheadAt = L.frame;
    if (!div.dataset.clickable) {
      div.on("plotly_click", (ev) => ev.points && ev.points.length && seek(ev.points[0].x));
      div.dataset.clickable = "1";
    }
  }
  L.chartsReady = true;
  for (const div of Object.values(L.el.charts)) movePlayhead(div);
}

export function clearCharts() {
  const E = L.el;
  if (E.uncertaintyChart) {
    delete E.charts.uncertainty;
    E.uncertaintyChart.hidden = true;
    if (window.Plotly) window.Plotly.purge(E.uncertaintyChart);
    E.uncertaintyChart.replaceChildren();
  }
  for (const div of Object.values(E.charts || {})) {
    if (window.Plotly) window.Plotly.purge(div);
    div.replaceChildren();
  }
}

/** Move a chart's playhead to the player's frame: one relayout in flight per chart, the newest frame wins. */
export function movePlayhead(div) {
  if (!L.chartsReady || div.playheadBusy || div.playheadAt === L.frame) return;
  const k = L.frame;
  div.playheadBusy = true;
  // A relayout that fails leaves the line where it was; the next frame tries again.
  window.Plotly.relayout(div, { "shapes[0].x0": k, "shapes[0].x1": k }).catch(() => {}).finally(() => {
    div.playheadBusy = false;
    div.playheadAt = k;
    if (L.frame !== k) movePlayhead(div);
  });
}
