// The episode browser: filters, sorting and paging (all in SQL on the server), the list with thumbnails, quality
// chips and labels, and the bulk bar for the selected episodes.

import { api, get } from "../common/api.js";
import { button, debounced, h, options, refill } from "../common/dom.js";
import { loadDatasets } from "./curation.js";
import { reasonOptions } from "./annotation.js";
import { clamp, pretty } from "./format.js";
import { closeEpisode, openEpisode, reloadEpisode } from "./player.js";
import { L, say } from "./state.js";
import { allowed } from "./user.js";

const PAGE_SIZES = [25, 50, 100, 200];
const FILTER_KEYS = ["dataset", "task", "instruction", "source", "operator", "success", "quality_flag"]; // query
const SORT_LABELS = { created_at: "recorded" };

export function buildFilters() {
  const E = L.el;
  const text = (key, placeholder, attrs = {}) =>
    (E[`f_${key}`] = h("input", { id: `vla-label-f-${key}`, placeholder, oninput: debounced(applyFilters),
                                  ...attrs }));
  const select = (key, first) => (E[`f_${key}`] = h("select", { id: `vla-label-f-${key}`, onchange: applyFilters },
    h("option", { value: "" }, first)));
  // The sort keys come with the vocabulary; until then the current one is the only choice.
  E.sort = h("select", { id: "vla-label-sort", onchange: applyFilters }, ...options([L.sort], SORT_LABELS));
  E.order = h("select", { id: "vla-label-order", onchange: applyFilters }, ...options(["desc", "asc"],
    { desc: "descending", asc: "ascending" }));
  E.limit = h("select", { id: "vla-label-limit", onchange: applyFilters }, ...options(PAGE_SIZES.map(String)));
  E.limit.value = String(L.limit);
  E.f_trashed = h("input", { id: "vla-label-f-trashed", type: "checkbox", onchange: applyFilters });
  E.taskList = h("datalist", { id: "vla-label-tasks" });
  return h("div", { class: "vla-label-row vla-label-filters", id: "vla-label-filters" },
    select("dataset", "all datasets"), text("task", "task", { list: "vla-label-tasks", class: "vla-narrow" }),
    E.taskList, text("instruction", "instruction contains…"), select("source", "any source"),
    text("operator", "operator", { class: "vla-narrow" }), select("success", "any label"),
    select("quality_flag", "any quality"),
    h("label", {}, "from ", text("from", "", { type: "date", oninput: null, onchange: applyFilters })),
    h("label", {}, "to ", text("to", "", { type: "date", oninput: null, onchange: applyFilters })),
    h("label", { title: "show the trash (trashed episodes) instead of the live ones" }, E.f_trashed, " trash"),
    h("span", {}, "sort ", E.sort, E.order), h("span", {}, "page ", E.limit));
}

/** The choices the server owns (GET /api/labeling/vocabulary) into the filters and the bulk bar. */
export function fillBrowserVocabulary() {
  const E = L.el, v = L.vocab;
  refill(E.f_source, [h("option", { value: "" }, "any source"), ...options(v.sources)]);
  refill(E.f_success, [h("option", { value: "" }, "any label"), ...options(v.success_labels)]);
  refill(E.f_quality_flag, [h("option", { value: "" }, "any quality"), ...options(v.quality_flags,
    Object.fromEntries(v.quality_flags.map((f) => [f, pretty(f)])))]);
  if (v.sort_keys.length) refill(E.sort, options(v.sort_keys, SORT_LABELS));
  refill(E.bulkReason, [h("option", { value: "" }, "(reason)"), ...reasonOptions()]);
  E.taskList.replaceChildren(...L.tasks.map((t) => h("option", { value: t })));
}

export function buildBulkBar() {
  const E = L.el;
  E.bulkCount = h("b", { id: "vla-label-bulk-count" });
  E.bulkInstruction = h("input", { id: "vla-label-bulk-instruction", placeholder: "new instruction" });
  E.bulkReason = h("select", { id: "vla-label-bulk-reason" });
  E.bulkDataset = h("input", { id: "vla-label-bulk-dataset", placeholder: "dataset", list: "vla-label-dataset-names",
                               class: "vla-narrow" });
  const annotateAll = (changes, what) => bulk("annotate", { changes }, what);
  const instruction = () => E.bulkInstruction.value.trim();
  const failure = () => (E.bulkReason.value ? { human_success: false, failure_reason: E.bulkReason.value }
    : { human_success: false });
  E.bulkLive = h("span", { class: "vla-label-row" },
    button("Set instruction", () => instruction() && annotateAll({ instruction: instruction() }, "set instruction"),
      { id: "vla-label-bulk-set-instruction" }), E.bulkInstruction,
    button("✓ Success", () => annotateAll({ human_success: true }, "label success"),
      { id: "vla-label-bulk-success" }),
    button("✗ Failure", () => annotateAll(failure(), "label failure"), { id: "vla-label-bulk-failure" }),
    E.bulkReason,
    button("Move to", () => E.bulkDataset.value.trim() &&
      bulk("move", { dataset: E.bulkDataset.value.trim() }, "move"), { id: "vla-label-bulk-move" }), E.bulkDataset,
    button("Trash", () => bulk("trash", {}, "trash"), { id: "vla-label-bulk-trash" }));
  E.bulkTrash = h("span", { class: "vla-label-row" },
    button("Restore", () => bulk("restore", {}, "restore"), { id: "vla-label-bulk-restore" }),
    button("Purge for good…", () => {
      const sure = confirm(`Delete ${L.selected.size} episodes and their files for good? This cannot be undone.`);
      if (sure) bulk("purge", {}, "purge");
    }, { id: "vla-label-bulk-purge", class: "vla-danger" }));
  E.bulk = h("div", { id: "vla-label-bulk", class: "vla-label-row vla-label-bulk", hidden: true }, E.bulkCount,
    " selected:", E.bulkLive, E.bulkTrash, button("Clear", () => { L.selected.clear(); renderList(); }));
  return E.bulk;
}

export function buildList(refresh) {
  const E = L.el;
  E.selectPage = h("input", { type: "checkbox", id: "vla-label-select-page", title: "select the whole page",
                              onchange: (ev) => { selectPage(ev.target.checked); ev.target.blur(); } });
  E.rows = h("tbody", { id: "vla-label-rows" });
  E.count = h("span", { id: "vla-label-count" });
  E.prev = button("‹ Prev", () => turnPage(-1), { id: "vla-label-prev" });
  E.next = button("Next ›", () => turnPage(1), { id: "vla-label-next" });
  const head = ["", "id", "instruction · quality", "dataset", "operator", "length", "label", "reason"];
  return h("div", {},
    h("div", { class: "vla-label-row" }, E.prev, E.next, E.count, button("↻", refresh, { title: "refresh" })),
    h("table", { class: "vla-label-table", id: "vla-label-table" },
      h("thead", {}, h("tr", {}, h("th", {}, E.selectPage), ...head.map((t) => h("th", {}, t)))), E.rows));
}

export function applyFilters() {
  const E = L.el, f = {};
  for (const key of [...FILTER_KEYS, "from", "to"]) {
    const value = E[`f_${key}`].value.trim();
    if (value) f[key] = value;
  }
  f.trashed = E.f_trashed.checked;
  E.f_trashed.blur();
  if (f.trashed !== !!L.filters.trashed) L.selected.clear();
  Object.assign(L, { filters: f, sort: E.sort.value || L.sort, order: E.order.value, limit: Number(E.limit.value),
                     offset: 0 });
  return loadList();
}

function localDay(value, plusDays = 0) { // "2024-05-01" -> local midnight, as an ISO instant
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function listQuery() {
  const f = L.filters, q = new URLSearchParams({ offset: L.offset, limit: L.limit, sort: L.sort, order: L.order });
  for (const key of FILTER_KEYS) if (f[key]) q.set(key, f[key]);
  if (f.from) q.set("created_from", localDay(f.from));
  if (f.to) q.set("created_to", localDay(f.to, 1)); // the "to" day is included
  if (f.trashed) q.set("trashed", "true");
  return q.toString();
}

export async function loadList() {
  const token = ++L.listToken;
  try {
    const r = await get(`episodes?${listQuery()}`);
    if (token !== L.listToken) return; // a newer query was sent meanwhile
    L.rows = r.data;
    L.count = r.count;
    renderList();
  } catch (e) {
    say(`episodes: ${e.message}`, true);
  }
}

function turnPage(direction) {
  L.offset = clamp(L.offset + direction * L.limit, 0, Math.max(0, L.count - 1));
  return loadList();
}

export function renderList() {
  const E = L.el;
  if (!E.rows) return;
  E.rows.replaceChildren(...L.rows.map(rowFor));
  E.count.textContent = L.count ? `${L.offset + 1}–${L.offset + L.rows.length} of ${L.count} episodes`
    : `no ${L.filters.trashed ? "trashed " : ""}episodes match`;
  E.count.dataset.count = L.count;
  E.prev.disabled = L.offset === 0;
  E.next.disabled = L.offset + L.rows.length >= L.count;
  E.selectPage.checked = L.rows.length > 0 && L.rows.every((r) => L.selected.has(r.id));
  E.bulk.hidden = L.selected.size === 0;
  E.bulkCount.textContent = `${L.selected.size} episode${L.selected.size === 1 ? "" : "s"}`;
  E.bulkLive.hidden = !!L.filters.trashed;
  E.bulkTrash.hidden = !L.filters.trashed;
}

function labelBadge(ep) {
  // effective_success is the server's rule (the operator's verdict, else the sim's check); none is "unlabeled".
  const value = ep.effective_success ?? null, auto = ep.human_success == null && value != null;
  const text = value == null ? "unlabeled" : value ? "✓ success" : "✗ failure";
  const cls = `vla-label-verdict ${value == null ? "" : value ? "vla-yes" : "vla-no"}${auto ? " vla-auto" : ""}`;
  return h("span", { class: cls,
                     title: auto ? "from the sim's automatic check (no operator label yet)" : "operator's label" },
    auto ? `${text} (auto)` : text);
}

export function flagChips(ep) {
  return Object.entries(ep.quality_flags || {}).map(([flag, detail]) =>
    h("span", { class: "vla-label-chip vla-flag", "data-flag": flag,
                title: typeof detail === "string" ? detail : JSON.stringify(detail) }, pretty(flag)));
}

function rowFor(ep) {
  const check = h("input", { type: "checkbox", class: "vla-label-check", checked: L.selected.has(ep.id),
    onclick: (ev) => ev.stopPropagation(),
    onchange: (ev) => { toggleSelected(ep.id, ev.target.checked); ev.target.blur(); } });
  const current = L.ep && L.ep.id === ep.id;
  return h("tr", { class: `vla-label-episode${current ? " vla-current" : ""}`, "data-episode-id": ep.id,
                   onclick: () => openEpisode(ep.id) },
    h("td", {}, check),
    h("td", {}, h("img", { class: "vla-label-thumb", src: ep.thumbnail_url, loading: "lazy", alt: "" })),
    h("td", {}, String(ep.id)),
    h("td", { title: ep.instruction }, h("div", { class: "vla-label-instr" }, ep.instruction), ...flagChips(ep)),
    h("td", {}, ep.dataset), h("td", {}, ep.operator ?? "—"),
    h("td", { title: `${ep.duration_s} s` }, `${ep.length} fr`), h("td", {}, labelBadge(ep)),
    h("td", {}, ep.failure_reason ? pretty(ep.failure_reason) : ""));
}

export function toggleSelected(id, on) {
  if (on) L.selected.add(id);
  else L.selected.delete(id);
  renderList();
}

function selectPage(on) {
  for (const r of L.rows) on ? L.selected.add(r.id) : L.selected.delete(r.id);
  renderList();
}

async function bulk(op, extra, what) {
  const ids = [...L.selected];
  if (!ids.length || !allowed("curation.write")) return;
  try {
    const r = await api("POST", "episodes/bulk", { episode_ids: ids, op, ...extra });
    say(`${what}: ${r.episode_ids.length} of ${ids.length} episodes changed`);
    L.selected.clear();
    await Promise.all([loadList(), loadDatasets()]);
    if (L.ep && ids.includes(L.ep.id)) {
      if (op === "purge") closeEpisode();
      else await reloadEpisode();
    }
  } catch (e) {
    say(`${what}: ${e.message}`, true);
  }
}

/** Open the next (+1) or previous (-1) episode of the list, across pages. */
export async function stepEpisode(delta) {
  let i = L.rows.findIndex((r) => L.ep && r.id === L.ep.id);
  i = i < 0 ? 0 : i + delta;
  if (i >= L.rows.length && L.offset + L.rows.length < L.count) { await turnPage(1); i = 0; }
  else if (i < 0 && L.offset > 0) { await turnPage(-1); i = L.rows.length - 1; }
  const row = L.rows[clamp(i, 0, L.rows.length - 1)];
  if (row && (!L.ep || row.id !== L.ep.id)) await openEpisode(row.id);
}
