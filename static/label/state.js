// The Label tab's state, one object shared by its modules. It is window.vlaLabel too: the browser tests read the
// open episode, the playhead and the selection from it.

export const L = {
  vocab: { failure_reasons: [], quality_flags: [], sources: [], success_labels: [], sort_keys: [] }, // the API's
  datasets: [], snapshots: [], tasks: [],
  filters: {}, sort: "created_at", order: "desc", offset: 0, limit: 25, rows: [], count: 0,
  selected: new Set(), ep: null, signals: null, history: [], frame: 0, playing: false, videos: [],
  marks: { start: null, end: null }, chartsReady: false, listToken: 0, openToken: 0,
  exportJob: null, message: "", el: {},
};
window.vlaLabel = L;

/** Show a line in the tab's status line (red when `error`). */
export function say(text, error = false) {
  L.message = text;
  const m = L.el.msg;
  if (m) { m.textContent = text; m.classList.toggle("vla-error", error); }
}
