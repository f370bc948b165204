// The Models page's shared state (window.vlaModels, for tests and the browser's console) and its status line.

export const M = {
  el: {},
  models: [], // the listed models (filters applied), newest first
  detail: null, // the open model (GET /api/models/{id}: lineage and file problems included)
  compared: null, // the latest GET /api/models/{a}/compare/{b}
};
window.vlaModels = M;

export function say(text, error = false) {
  if (!M.el.msg) return;
  M.el.msg.textContent = text;
  M.el.msg.classList.toggle("vla-error", error);
}

/** A value for a table cell: numbers to 4 significant digits, objects as JSON, nothing as a dash. */
export function show(v) {
  if (v == null) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** Closed-loop success as "83% (25/30, 95% CI 66–93%)", from a model's metrics.closed_loop. */
export function successText(loop) {
  if (!loop || typeof loop.success_rate !== "number") return "—";
  const pct = (x) => `${Math.round(100 * x)}%`;
  const ci = Array.isArray(loop.wilson_95) ? `, 95% CI ${pct(loop.wilson_95[0])}–${pct(loop.wilson_95[1])}` : "";
  return `${pct(loop.success_rate)} (${loop.successes ?? "?"}/${loop.episodes ?? "?"}${ci})`;
}
