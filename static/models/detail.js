// One model in detail: its stage and file check (missing or altered files in red: such a model is never loaded),
// promote / archive / notes, the download link, config and metrics, the training curves (/curves) and its lineage:
// parent models -> snapshot -> episodes (each a link: a parent opens here, an episode in the Label tab, the job in
// the Train tab), and its evaluation jobs (evaluations.js). Changing anything needs training.write: else the
// controls are disabled, with why.

import { api, get } from "../common/api.js";
import { button, h } from "../common/dom.js";
import { can, reason } from "../common/identity.js";
import { chartDivs, drawCurves } from "../train/curves.js";
import { evaluationBox, loadEvaluations } from "./evaluations.js";
import { M, say, show, successText } from "./state.js";

/** Click a dashboard tab by its label (Gradio's tab bar): links between the pages. */
export function openTab(label) {
  const tab = [...document.querySelectorAll('button[role="tab"]')].find((b) => b.textContent.trim() === label);
  if (tab) tab.click();
  return !!tab;
}

export function buildDetail() {
  const E = M.el;
  E.detail = h("div", { id: "vla-models-detail", class: "vla-models-detail" }, "Click a model to see it.");
  E.curves = chartDivs("vla-models-chart");
  E.curveBox = h("div", { class: "vla-models-charts", hidden: true }, ...Object.values(E.curves));
  return h("div", {}, E.detail, E.curveBox);
}

const table = (rows, id) => h("table", { class: "vla-models-kv", id },
  h("tbody", {}, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));

function guarded(el, what) {
  if (!can("training.write")) { el.disabled = true; el.title = reason(what); }
  return el;
}

async function change(what, call, reload) {
  try {
    await call();
    say(what);
  } catch (e) {
    say(`${what}: ${e.message}`, true);
  }
  await reload();
}

function lineage(m) {
  const L = m.lineage, parts = [];
  for (const p of L.parents) {
    parts.push(h("a", { href: `#model-${p.id}`, class: "vla-models-parent", "data-model-id": p.id,
      onclick: (ev) => { ev.preventDefault(); openModel(p.id); } }, `${p.name} v${p.version} (${p.stage})`), " → ");
  }
  if (L.snapshot) {
    const s = L.snapshot;
    const episodes = s.episode_ids.map((id) => h("a", { href: `#episode-${id}`, class: "vla-models-episode",
      "data-episode-id": id, title: "open in the Label tab", onclick: (ev) => {
        ev.preventDefault();
        if (openTab("Label")) setTimeout(() => window.vlaLabel?.api?.openEpisode(id), 300);
      } }, String(id)));
    parts.push(h("span", { id: "vla-models-snapshot" }, `snapshot ${s.name} (${s.dataset}, ${s.num_episodes} episodes: `),
      ...episodes.flatMap((a, i) => (i ? [", ", a] : [a])), ")");
  } else {
    parts.push("no snapshot recorded (imported)");
  }
  if (L.job) {
    parts.push(" ← ", h("a", { href: `#job-${L.job.id}`, id: "vla-models-job", onclick: (ev) => {
      ev.preventDefault();
      if (openTab("Train")) window.vlaTrain?.api?.select(L.job.id);
    } }, `job ${L.job.id} (${L.job.status}, by ${L.job.created_by ?? "?"})`));
  }
  return h("div", { class: "vla-models-lineage", id: "vla-models-lineage" }, h("b", {}, "Lineage: "), ...parts);
}

function render(m, reload) {
  const E = M.el, path = `models/${m.id}`;
  const notes = h("textarea", { id: "vla-models-notes", rows: 2, cols: 60, maxlength: 10000 }, m.notes || "");
  const promote = guarded(button("Promote to production", () => change(`${m.name} v${m.version} promoted`,
    () => api("POST", `${path}/promote`), reload), { id: "vla-models-promote" }), "promote models");
  promote.disabled ||= m.stage === "production" || m.problems.length > 0;
  const archive = guarded(button("Archive", () => change(`${m.name} v${m.version} archived`,
    () => api("POST", `${path}/archive`), reload), { id: "vla-models-archive" }), "archive models");
  archive.disabled ||= m.stage !== "candidate";
  const save = guarded(button("Save notes", () => change("notes saved",
    () => api("PATCH", path, { notes: notes.value }), reload), { id: "vla-models-save-notes" }), "edit notes");
  notes.disabled = !can("training.write");
  const problems = m.problems.length
    ? h("ul", { id: "vla-models-problems", class: "vla-error" }, h("b", {}, "Files do not check out (never loaded):"),
      ...m.problems.map((p) => h("li", {}, p)))
    : h("div", { id: "vla-models-problems", class: "vla-models-ok" }, "files intact (sha256 checked)");
  E.detail.replaceChildren(
    h("h3", { id: "vla-models-title", "data-model-id": m.id, "data-stage": m.stage },
      `${m.name} v${m.version} — ${m.stage}`),
    problems,
    h("div", { class: "vla-models-row" }, promote, archive,
      h("a", { id: "vla-models-download", href: `/api/${path}/download`, download: "" }, "Download .tar.gz")),
    h("div", { class: "vla-models-row" }, notes, save),
    lineage(m),
    h("div", { class: "vla-models-cols" },
      h("div", {}, h("b", {}, "Metrics"), table([["closed-loop success", successText(m.metrics.closed_loop)],
        ...Object.entries(m.metrics).filter(([k]) => k !== "closed_loop").map(([k, v]) => [k, show(v)])],
      "vla-models-metrics")),
      h("div", {}, h("b", {}, "Config"), table(Object.entries(m.config).map(([k, v]) => [k, show(v)]),
        "vla-models-config"))),
    evaluationBox(m),
    h("div", { class: "vla-models-hint" }, `${m.policy_type}, by ${m.created_by ?? "?"}, at ${m.path}`));
}

/** Open model `id`: details, then its curves (a model whose files do not check out has none to show). */
export async function openModel(id) {
  let m;
  try {
    m = await get(`models/${id}`);
  } catch (e) {
    return say(`model ${id}: ${e.message}`, true);
  }
  M.detail = m;
  const reload = async () => { await openModel(id); await M.api.load(); };
  render(m, reload);
  loadEvaluations(id);
  M.el.curveBox.hidden = true;
  try {
    const { records } = await get(`models/${id}/curves`);
    if (M.detail !== m) return;
    M.el.curveBox.hidden = false;
    await drawCurves(M.el.curves, [{ label: `${m.name} v${m.version}`, records }], `model-${id}`);
  } catch (e) {
    say(`curves of model ${id}: ${e.message}`, true);
  }
}
