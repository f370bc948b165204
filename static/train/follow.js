// The followed job: its live curves (metrics.jsonl polled with ?after=K, only the new records each time, appended
// to the charts) and its log tail. Once the job has finished, one last poll draws its end and polling stops. A job
// resumed or retried rewrites metrics.jsonl from its checkpoint, so a new attempt redraws the curves from the start.

import { ApiError, get, toSignIn } from "../common/api.js";
import { h } from "../common/dom.js";
import { FINISHED } from "./jobs.js";
import { LiveCurves, chartDivs } from "./curves.js";
import { T, say } from "./state.js";

const LOG_LINES = 80;
let curves = null;

export function buildFollow() {
  const E = T.el;
  E.charts = chartDivs("vla-train-chart");
  curves = new LiveCurves(E.charts);
  E.followTitle = h("div", { id: "vla-train-follow-title", class: "vla-train-follow-title" },
    "Click a job to follow it.");
  E.log = h("pre", { id: "vla-train-log", class: "vla-train-log" });
  return h("div", { class: "vla-train-follow" }, E.followTitle,
    h("div", { class: "vla-train-charts" }, ...Object.values(E.charts)),
    h("details", { open: true }, h("summary", {}, `log (last ${LOG_LINES} lines)`), E.log));
}

/** Follow job `id` from its first record. */
export function follow(id) {
  T.selected = id;
  T.follow = { id, attempts: null, after: 0, finished: false };
  curves.reset();
  T.el.log.textContent = "";
  T.el.followTitle.textContent = `job ${id}`;
}

async function logTail(id) {
  const r = await fetch(`/api/jobs/${id}/log?tail_lines=${LOG_LINES}`);
  if (r.status === 401) toSignIn();
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
  return r.text();
}

/** Follow the followed job again once it runs again (resumed or retried after it had finished). */
export function wakeIfRestarted(jobs) {
  const F = T.follow, job = jobs.find((j) => j.id === F.id);
  if (F.finished && job && !FINISHED.has(job.status)) F.finished = false;
}

let polling = null; // the poll in flight: a second caller waits for it instead of reading the same records twice

/** One poll of the followed job (a no-op once it has finished and been drawn to its end). */
export function pollFollowed() {
  polling ??= poll().finally(() => { polling = null; });
  return polling;
}

async function poll() {
  const F = T.follow;
  if (F.id == null || F.finished) return;
  const id = F.id;
  try {
    const job = await get(`jobs/${id}`);
    if (T.follow !== F) return; // another job was picked meanwhile
    if (F.attempts !== null && job.attempts !== F.attempts) { // resumed or retried: metrics.jsonl was rewritten
      curves.reset();
      F.after = 0;
    }
    F.attempts = job.attempts;
    const page = await get(`jobs/${id}/metrics?after=${F.after}`);
    if (T.follow !== F) return;
    F.after = page.next;
    if (page.records.length || !curves.drawn) await curves.append(page.records, `job-${id}`);
    T.el.log.textContent = await logTail(id);
    T.el.followTitle.textContent = `job ${id}: ${job.status}${job.message ? ` — ${job.message}` : ""}` +
      (job.error ? ` — ${job.error.split("\n").slice(-1)[0]}` : "");
    T.el.followTitle.dataset.status = job.status;
    F.finished = FINISHED.has(job.status); // this poll read the finished job's last records
  } catch (e) {
    say(`job ${id}: ${e.message}`, true);
  }
}
