// Curation: trim and split the open episode (new episodes; the original goes to the trash), the datasets and
// snapshots tables, merging datasets, snapshots, and the LeRobot export with its progress bar.

import { api, get } from "../common/api.js";
import { button, cells, h, headRow, options, refill } from "../common/dom.js";
import { failed, queued } from "./annotation.js";
import { applyFilters, loadList } from "./browser.js";
import { fmtTime } from "./format.js";
import { openEpisode } from "./player.js";
import { L, say } from "./state.js";
import { allowed } from "./user.js";

export function buildCuration() {
  const E = L.el;
  E.trimStart = h("input", { id: "vla-label-trim-start", type: "number", min: 0, class: "vla-num" });
  E.trimEnd = h("input", { id: "vla-label-trim-end", type: "number", min: 0, class: "vla-num" });
  return h("section", { class: "vla-label-row vla-label-curation" }, "Keep frames ", E.trimStart, "–", E.trimEnd,
    button("✂ Trim", trim, { id: "vla-label-trim" }), button("Split at playhead", split, { id: "vla-label-split" }),
    h("span", { class: "vla-muted" }, "(new episodes are made; the original goes to the trash)"));
}

export function buildDatasets() {
  const E = L.el;
  E.datasetTable = h("tbody", { id: "vla-label-datasets" });
  E.datasetNames = h("datalist", { id: "vla-label-dataset-names" });
  E.mergeFrom = h("select", { id: "vla-label-merge-from" });
  E.mergeInto = h("select", { id: "vla-label-merge-into" });
  E.snapName = h("input", { id: "vla-label-snap-name", placeholder: "snapshot name", class: "vla-narrow" });
  E.snapDataset = h("select", { id: "vla-label-snap-dataset" });
  E.snapSuccess = h("input", { id: "vla-label-snap-success", type: "checkbox" });
  E.snapshotList = h("tbody", { id: "vla-label-snapshots" });
  E.exportWhat = h("select", { id: "vla-label-export-what" });
  E.exportProgress = h("progress", { id: "vla-label-export-progress", max: 1, value: 0 });
  E.exportStatus = h("span", { id: "vla-label-export-status" });
  return h("details", { class: "vla-label-datasets", id: "vla-label-datasets-panel", open: true },
    h("summary", {}, "Datasets, snapshots and export"), E.datasetNames,
    h("div", { class: "vla-label-columns" },
      h("table", { class: "vla-label-table" }, headRow(["dataset", "episodes", "description", "created"]),
        E.datasetTable),
      h("table", { class: "vla-label-table" },
        headRow(["snapshot", "dataset", "episodes", "frames", "by", "created"]), E.snapshotList)),
    h("div", { class: "vla-label-row" }, "Merge ", E.mergeFrom, " into ", E.mergeInto,
      button("Merge", merge, { id: "vla-label-merge" })),
    h("div", { class: "vla-label-row" }, "Snapshot of ", E.snapDataset, E.snapName,
      h("label", {}, E.snapSuccess, " successes only"),
      button("Create snapshot", createSnapshot, { id: "vla-label-snap-create" })),
    h("div", { class: "vla-label-row" }, "Export to LeRobot v3.0: ", E.exportWhat,
      button("Export", startExport, { id: "vla-label-export" }), E.exportProgress, E.exportStatus));
}

// ---- trim and split: queued behind the annotation writes, since they too send the episode's version ----------
const cut = (kind, body, what) => queued(() => cutEpisode(kind, body, what));

async function cutEpisode(kind, body, what) {
  if (!L.ep || !allowed("episodes.edit")) return;
  const id = L.ep.id;
  try {
    const r = await api("POST", `episodes/${id}/${kind}`, { version: L.ep.version, ...body });
    say(`${what}: episode ${id} → new episode${r.episode_ids.length > 1 ? "s" : ""} ${r.episode_ids.join(", ")}` +
        ` (the original is in the trash)`);
    await loadList();
    await openEpisode(r.episode_ids[0]);
  } catch (e) {
    failed(e, what);
  }
}

const trim = () => cut("trim", { start: Number(L.el.trimStart.value), end: Number(L.el.trimEnd.value) }, "trim");
const split = () => cut("split", { at: L.frame }, `split at frame ${L.frame}`);

// ---- datasets and snapshots -------------------------------------------------------------------------------------
export async function loadDatasets() {
  try {
    [L.datasets, L.snapshots] = await Promise.all([get("datasets"), get("snapshots")]);
    fillDatasets();
  } catch (e) {
    say(`datasets: ${e.message}`, true);
  }
}

export function fillDatasets() {
  const E = L.el;
  if (!E.root) return;
  const names = L.datasets.map((d) => d.name);
  refill(E.f_dataset, [h("option", { value: "" }, "all datasets"), ...options(names)]);
  refill(E.mergeFrom, options(names));
  refill(E.mergeInto, options(names));
  refill(E.snapDataset, options(names));
  const group = (label, kind, values) =>
    h("optgroup", { label }, ...values.map((n) => h("option", { value: `${kind}:${n}` }, n)));
  refill(E.exportWhat, [group("datasets", "dataset", names),
    group("snapshots", "snapshot", L.snapshots.map((s) => s.name))]);
  E.datasetNames.replaceChildren(...options(names));
  E.datasetTable.replaceChildren(...L.datasets.map((d) => h("tr", { "data-dataset": d.name },
    h("td", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showDataset(d.name); } }, d.name)),
    ...cells([d.num_episodes, d.description || "", fmtTime(d.created_at)]))));
  E.snapshotList.replaceChildren(...L.snapshots.map((s) =>
    h("tr", { "data-snapshot": s.name, title: s.description || "" },
      ...cells([s.name, s.dataset, s.num_episodes, s.num_frames, s.created_by, fmtTime(s.created_at)]))));
}

function showDataset(name) {
  L.el.f_dataset.value = name;
  applyFilters();
}

async function merge() {
  const E = L.el, from = E.mergeFrom.value, into = E.mergeInto.value;
  if (!from || !into || from === into) return say("pick two different datasets to merge", true);
  if (!allowed("curation.write") || !confirm(`Move every episode of "${from}" into "${into}"?`)) return;
  try {
    const r = await api("POST", `datasets/${encodeURIComponent(from)}/merge`, { into });
    say(`merged ${from} into ${into}: ${r.moved} episodes moved`);
    await Promise.all([loadDatasets(), loadList()]);
  } catch (e) {
    say(`merge: ${e.message}`, true);
  }
}

async function createSnapshot() {
  const E = L.el, name = E.snapName.value.trim();
  if (!name) return say("give the snapshot a name", true);
  if (!allowed("curation.write")) return;
  const body = { name, dataset: E.snapDataset.value };
  if (E.snapSuccess.checked) body.success = "success";
  try {
    const s = await api("POST", "snapshots", body);
    say(`snapshot ${s.name}: ${s.num_episodes} episodes, ${s.num_frames} frames`);
    E.snapName.value = "";
    await loadDatasets();
    E.exportWhat.value = `snapshot:${s.name}`;
  } catch (e) {
    say(`snapshot: ${e.message}`, true);
  }
}

// ---- export: a job on the server, polled until done ----------------------------------------------------------
async function startExport() {
  const E = L.el, value = E.exportWhat.value;
  if (!value || !allowed("exports.write")) return;
  const at = value.indexOf(":"), kind = value.slice(0, at), name = value.slice(at + 1);
  E.exportStatus.textContent = `exporting ${kind} ${name}…`;
  try {
    showJob(await api("POST", "exports", { [kind]: name }));
  } catch (e) {
    E.exportStatus.textContent = `export failed: ${e.message}`;
    E.exportStatus.dataset.state = "failed";
    say(`export: ${e.message}`, true);
  }
}

function showJob(job) {
  const E = L.el;
  L.exportJob = job;
  // An export is a job a worker process runs (/api/jobs): queued until a worker is free, then running.
  E.exportProgress.max = Math.max(1, job.total || 0);
  E.exportProgress.value = job.state === "done" ? E.exportProgress.max : job.done || 0;
  E.exportStatus.dataset.state = job.state;
  E.exportStatus.textContent = job.state === "done" ? `done: ${job.out_dir}`
    : job.state === "failed" ? `failed: ${job.error}` : job.state === "cancelled" ? "cancelled"
    : `${job.state} ${job.done} / ${job.total || "?"}…`;
  E.exportStatus.classList.toggle("vla-error", job.state === "failed");
  if (["queued", "running"].includes(job.state)) setTimeout(() => pollExport(job.id), 400);
}

async function pollExport(id) {
  try {
    showJob(await get(`exports/${id}`));
  } catch (e) {
    L.el.exportStatus.textContent = `export ${id}: ${e.message}`;
    if (e.status !== 404) setTimeout(() => pollExport(id), 2000); // a hiccup: keep asking
  }
}
