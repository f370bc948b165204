// The Train tab's shared state (window.vlaTrain, for tests and the browser's console) and its status line.

export const T = {
  el: {}, // the tab's elements, by role
  jobs: [], // the latest page of training jobs, newest first
  selected: null, // the followed job's id
  choices: { snapshots: [], datasets: [], models: [], presets: {}, options: [] },
  follow: { id: null, attempts: null, after: 0, finished: false }, // where the followed job's metrics poll stands
};
window.vlaTrain = T;

export function say(text, error = false) {
  if (!T.el.msg) return;
  T.el.msg.textContent = text;
  T.el.msg.classList.toggle("vla-error", error);
}

/** A server time as a Date (the API sends ISO 8601 in UTC; one without a zone is read as UTC too, not local). */
export const serverTime = (t) => (t ? new Date(/[zZ]|[+-]\d\d:\d\d$/.test(t) ? t : `${t}Z`) : null);
