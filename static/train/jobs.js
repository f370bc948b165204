// The Train tab's job list (GET /api/jobs?kind=train): status, a progress bar, the ETA, who and when, the model a
// finished job registered, and Cancel / Resume / Retry. Clicking a row follows that job (curves and log).
// Cancel, resume and retry need jobs.manage (backend/services/roles.py may_manage_job): else disabled, with why.

import { api, get } from "../common/api.js";
import { button, h } from "../common/dom.js";
import { can, reason } from "../common/identity.js";
import { T, say, serverTime } from "./state.js";

export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const seen = new Map(); // "id:attempt" -> [progress, ms] when this attempt was first seen (the ETA's baseline)

/** Seconds left, from the progress made since the attempt started (null while unknown). */
export function eta(job, now = Date.now()) {
  if (job.status !== "running" || !(job.progress > 0)) return null;
  const key = `${job.id}:${job.attempts}`;
  const started = serverTime(job.started_at);
  // The first attempt started at progress 0; a resumed one at wherever it was when this page first saw it.
  if (!seen.has(key)) seen.set(key, job.attempts <= 1 && started ? [0, started.getTime()] : [job.progress, now]);
  const [p0, t0] = seen.get(key);
  if (job.progress <= p0 || now <= t0) return null;
  return ((now - t0) / 1000) * (1 - job.progress) / (job.progress - p0);
}

export function duration(s) {
  if (s == null || !Number.isFinite(s)) return "—";
  if (s < 60) return `${Math.round(s)} s`;
  return s < 3600 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${(s / 3600).toFixed(1)} h`;
}

export function buildJobs(onSelect) {
  const E = T.el;
  E.jobRows = h("tbody", { id: "vla-train-jobs" });
  E.onSelect = onSelect;
  return h("div", { class: "vla-train-jobs" },
    h("div", { class: "vla-train-row" }, h("b", {}, "Training jobs "), button("Refresh", loadJobs,
      { id: "vla-train-refresh" })),
    h("table", { class: "vla-train-table" },
      h("thead", {}, h("tr", {}, ...["id", "status", "progress", "ETA", "model", "by", "created", ""]
        .map((t) => h("th", {}, t)))), E.jobRows));
}

async function act(job, what, path, body) {
  try {
    await api("POST", `jobs/${job.id}/${path}`, body);
    say(`job ${job.id}: ${what}`);
  } catch (e) {
    say(`job ${job.id}: ${what}: ${e.message}`, true);
  }
  await loadJobs();
}

function actions(job) {
  const manage = (el, what) => {
    if (!can("jobs.manage")) { el.disabled = true; el.title = reason(what); }
    return el;
  };
  const active = job.status === "queued" || job.status === "running";
  const stopped = job.status === "failed" || job.status === "cancelled";
  const cancel = manage(button(job.cancel_requested ? "Cancelling…" : "Cancel",
    () => act(job, "cancel requested", "cancel"), { class: "vla-train-cancel" }), "cancel jobs");
  cancel.disabled ||= !active || job.cancel_requested;
  const resume = manage(button("Resume", () => act(job, "resumed from its last checkpoint", "retry", { fresh: false }),
    { class: "vla-train-resume", title: "continue from the last checkpoint" }), "resume jobs");
  const retry = manage(button("Retry", () => {
    if (confirm(`Start job ${job.id} over from scratch? Its checkpoints are deleted.`)) {
      act(job, "started over", "retry", { fresh: true });
    }
  }, { class: "vla-train-retry", title: "start over from scratch" }), "retry jobs");
  resume.disabled ||= !stopped;
  retry.disabled ||= !stopped;
  return h("td", { class: "vla-train-actions" }, cancel, resume, retry);
}

function modelCell(job) {
  const id = job.result && job.result.model_id;
  if (!id) return h("td", {}, job.status === "failed" ? h("span", { class: "vla-error", title: job.error || "" },
    "failed") : "—");
  return h("td", {}, h("a", { href: `#model-${id}`, class: "vla-train-model-link", "data-model-id": id,
    onclick: (ev) => { ev.preventDefault(); window.vlaModels?.api?.show(id); } },
  `${job.result.name} v${job.result.version}`));
}

function row(job) {
  const pct = Math.round(100 * (job.progress || 0));
  const bar = h("div", { class: "vla-train-bar", title: job.message || "" },
    h("div", { class: "vla-train-bar-fill", style: `width:${pct}%` }), h("span", {}, `${pct}%`));
  const tr = h("tr", { "data-job-id": job.id, "data-status": job.status,
    class: job.id === T.selected ? "vla-train-selected" : "", onclick: (ev) => {
      if (!ev.target.closest("button, a")) T.el.onSelect(job.id);
    } },
  h("td", {}, String(job.id)), h("td", { class: `vla-train-status vla-train-${job.status}` }, job.status),
  h("td", {}, bar, h("div", { class: "vla-train-hint" }, job.message || "")),
  h("td", { class: "vla-train-eta" }, job.status === "running" ? duration(eta(job)) : "—"),
  modelCell(job), h("td", {}, job.created_by || "—"),
  h("td", {}, serverTime(job.created_at).toLocaleString()), actions(job));
  return tr;
}

export function renderJobs() {
  T.el.jobRows.replaceChildren(...T.jobs.map(row));
}

export async function loadJobs() {
  try {
    T.jobs = (await get("jobs?kind=train&limit=50")).data;
  } catch (e) {
    return say(`jobs: ${e.message}`, true);
  }
  renderJobs();
}
