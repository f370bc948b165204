// The annotation panel: the operator's verdict and failure reason, instruction, paraphrases, segments (also marked
// with [ and ] at the playhead), notes, and the history with undo. Writes carry the episode's version; a 409 shows
// the conflict banner instead of overwriting someone else's change.

import { api, get } from "../common/api.js";
import { button, h, refill } from "../common/dom.js";
import { can } from "../common/identity.js";
import { loadList, renderList } from "./browser.js";
import { colour, fmtTime, pretty, short } from "./format.js";
import { reloadEpisode, renderTimeline } from "./player.js";
import { L, say } from "./state.js";
import { allowed } from "./user.js";

export function buildAnnotation() {
  const E = L.el;
  E.version = h("span", { id: "vla-label-version", class: "vla-badge" });
  E.success = button("✓ Success (S)", () => setVerdict(true), { id: "vla-label-success" });
  E.failure = button("✗ Failure (F)", () => setVerdict(false), { id: "vla-label-failure" });
  E.clearVerdict = button("unlabel", () => annotate({ human_success: null }, "label"), { id: "vla-label-unlabel" });
  E.auto = h("span", { id: "vla-label-auto", class: "vla-muted" });
  E.reason = h("select", { id: "vla-label-reason",
                           onchange: () => { E.reason.blur(); setReason(E.reason.value || null); } });
  E.instruction = h("input", { id: "vla-label-instruction", class: "vla-wide", maxlength: 500,
    onchange: () => E.instruction.value.trim() && E.instruction.value.trim() !== L.ep.instruction &&
      annotate({ instruction: E.instruction.value.trim() }, "instruction") });
  E.paraphrases = h("ul", { id: "vla-label-paraphrases", class: "vla-label-chips" });
  E.paraphraseNew = h("input", { id: "vla-label-paraphrase-new", placeholder: "add a paraphrase (Enter)",
                                 class: "vla-wide", onkeydown: (ev) => ev.key === "Enter" && addParaphrase() });
  E.segments = h("table", { id: "vla-label-segments", class: "vla-label-segments" });
  E.notes = h("textarea", { id: "vla-label-notes", rows: 2, placeholder: "notes",
    onchange: () => E.notes.value !== (L.ep.notes || "") && annotate({ notes: E.notes.value }, "notes") });
  E.history = h("ol", { id: "vla-label-history", class: "vla-label-history" });
  E.undo = button("↶ Undo (Ctrl+Z)", undo, { id: "vla-label-undo" });
  return h("section", { class: "vla-label-annotation", id: "vla-label-annotation" },
    h("div", { class: "vla-label-row" }, E.success, E.failure, E.clearVerdict, "reason ", E.reason, E.auto,
      E.version),
    h("label", { class: "vla-label-field" }, "Instruction", E.instruction),
    h("div", { class: "vla-label-field" }, "Paraphrases", E.paraphrases, E.paraphraseNew),
    h("div", { class: "vla-label-field" }, "Segments (sub-tasks; [ and ] mark them at the playhead)", E.segments),
    h("label", { class: "vla-label-field" }, "Notes", E.notes),
    h("details", { open: true }, h("summary", {}, "History ", E.undo), E.history));
}

/** The banner a refused write (409) shows at the top of the tab. */
export function buildConflictBanner() {
  const E = L.el;
  E.conflictText = h("span", { id: "vla-label-conflict-text" });
  E.conflict = h("div", { id: "vla-label-conflict", class: "vla-label-conflict", hidden: true }, E.conflictText,
    button("Reload episode", reloadAfterConflict, { id: "vla-label-reload" }),
    button("Dismiss", () => (E.conflict.hidden = true)));
  return E.conflict;
}

/** The failure reasons in the server's order, numbered as their hotkeys (1 · missed grasp, …). */
export const reasonOptions = () =>
  L.vocab.failure_reasons.map((r, i) => h("option", { value: r }, `${i + 1} · ${pretty(r)}`));

export function fillReasons() {
  refill(L.el.reason, [h("option", { value: "" }, "— no reason —"), ...reasonOptions()]);
  if (L.ep) L.el.reason.value = L.ep.failure_reason || ""; // the episode may have opened before the list came
}

// Writes to the episode run one after another: each sends the version the previous one returned (F then 2
// typed quickly must not conflict with each other).
let writes = Promise.resolve();
export function queued(fn) {
  const run = writes.then(fn);
  writes = run.catch(() => {}); // the failure is the caller's to show; the queue goes on
  return run;
}

const annotate = (changes, what) => queued(() => saveAnnotation(changes, what));

async function saveAnnotation(changes, what) {
  if (!L.ep || !allowed("episodes.edit")) return false;
  const ep = L.ep;
  try {
    const updated = await api("PATCH", `episodes/${ep.id}/annotation`, { version: ep.version, ...changes });
    episodeChanged(updated);
    say(`saved ${what} · episode ${updated.id} is at version ${updated.version}`);
    return true;
  } catch (e) {
    failed(e, what);
    if (e.status !== 409) renderAnnotation(); // put the fields back to what is stored
    return false;
  }
}

/** Show a refused write: the conflict banner for a 409 on the open episode, else the status line. */
export function failed(error, what) {
  if (error.status === 409 && L.ep) showConflict(error, what);
  else say(`${what}: ${error.message}`, true);
}

function episodeChanged(updated) {
  if (L.ep && L.ep.id === updated.id) L.ep = updated;
  const i = L.rows.findIndex((r) => r.id === updated.id);
  if (i >= 0) L.rows[i] = updated;
  renderList();
  renderAnnotation();
  renderTimeline();
  loadHistory();
}

async function loadHistory() {
  if (!L.ep) return;
  const id = L.ep.id;
  try {
    const history = await get(`episodes/${id}/history`);
    if (L.ep && L.ep.id === id) { L.history = history; renderHistory(); }
  } catch (e) {
    say(`history: ${e.message}`, true);
  }
}

function showConflict(error, what) {
  const E = L.el, current = error.data && error.data.current_version;
  E.conflictText.textContent = `Your ${what} was NOT saved: ` + (current == null ? error.message // e.g. trashed
    : `someone else changed episode ${L.ep.id} (now version ${current}, you had ${L.ep.version}). ` +
      "Reload it to see their change, then redo yours.");
  E.conflictText.title = error.message;
  E.conflict.hidden = false;
  say(`conflict: ${what} not saved`, true);
}

async function reloadAfterConflict() {
  L.el.conflict.hidden = true;
  await reloadEpisode();
  await loadList();
}

export const setVerdict = (success) =>
  annotate({ human_success: success }, success ? "success label" : "failure label");
export const setReason = (reason) =>
  annotate(reason ? { human_success: false, failure_reason: reason } : { failure_reason: null }, "failure reason");

function addParaphrase() {
  const E = L.el, text = E.paraphraseNew.value.trim();
  if (!text || !L.ep) return;
  annotate({ paraphrases: [...(L.ep.paraphrases || []), text] }, "paraphrase")
    .then((ok) => ok && (E.paraphraseNew.value = ""));
}

function saveSegments(segments, what = "segments") {
  return annotate({ segments: segments.map(({ start, end, text }) => ({ start, end, text })) }, what);
}

export function renderAnnotation() {
  const E = L.el, ep = L.ep;
  if (!ep) return;
  E.version.textContent = `version ${ep.version}`;
  E.success.classList.toggle("vla-on", ep.human_success === true);
  E.failure.classList.toggle("vla-on", ep.human_success === false);
  E.auto.textContent = `sim check: ${ep.auto_success == null ? "—" : ep.auto_success ? "success" : "failure"}`;
  E.reason.value = ep.failure_reason || "";
  if (document.activeElement !== E.instruction) E.instruction.value = ep.instruction;
  if (document.activeElement !== E.notes) E.notes.value = ep.notes || "";
  E.paraphrases.replaceChildren(...(ep.paraphrases || []).map((p, i) => h("li", { class: "vla-label-chip" }, p,
    button("×", () => annotate({ paraphrases: ep.paraphrases.filter((_, j) => j !== i) }, "paraphrase removal"),
      { class: "vla-x", title: "remove" }))));
  const segs = ep.segments || [];
  const edit = (i, field) => (ev) => {
    const value = field === "text" ? ev.target.value.trim() : Number(ev.target.value);
    saveSegments(segs.map((s, j) => (j === i ? { ...s, [field]: value } : s)), "segment");
  };
  E.segments.replaceChildren(
    h("tr", {}, ...["", "start", "end", "text", ""].map((t) => h("th", {}, t))),
    ...segs.map((s, i) => h("tr", { class: "vla-label-segment", "data-segment": i },
      h("td", {}, h("span", { class: "vla-swatch", style: `background:${colour(i)}` })),
      h("td", {}, h("input", { type: "number", class: "vla-num", value: s.start, onchange: edit(i, "start") })),
      h("td", {}, h("input", { type: "number", class: "vla-num", value: s.end, onchange: edit(i, "end") })),
      h("td", {}, h("input", { class: "vla-wide", value: s.text, onchange: edit(i, "text") })),
      h("td", {}, button("×", () => saveSegments(segs.filter((_, j) => j !== i), "segment removal"),
        { class: "vla-x", title: "delete the segment" })))));
  if (!segs.length) E.segments.append(h("tr", {}, h("td", { colspan: 5, class: "vla-muted" }, "no segments yet")));
  renderHistory();
}

function renderHistory() {
  const E = L.el;
  E.history.replaceChildren(...L.history.map((ev) => h("li", { class: ev.undone_by ? "vla-undone" : "",
    title: ev.undone_by ? `undone by event ${ev.undone_by}` : "" },
    h("b", {}, `v${ev.version}`), ` ${fmtTime(ev.at)} · ${ev.user} · ${ev.action}: `,
    Object.entries(ev.changes || {}).map(([f, [a, b]]) => `${pretty(f)} ${short(a)} → ${short(b)}`).join("; "))));
  if (!L.history.length) E.history.append(h("li", { class: "vla-muted" }, "no changes yet"));
  E.undo.disabled = !can("episodes.edit") || !L.history.some((ev) => !ev.undone_by && ev.action !== "undo");
}

export const undo = () => queued(undoLast);

async function undoLast() {
  if (!L.ep || !allowed("episodes.edit")) return;
  try {
    const updated = await api("POST", `episodes/${L.ep.id}/undo`, { version: L.ep.version });
    episodeChanged(updated);
    say(`undone · episode ${updated.id} is at version ${updated.version}`);
  } catch (e) {
    failed(e, "undo");
  }
}

// ---- segments by hotkey: [ marks the start at the playhead, ] the end, then the text is typed -----------------
export function markStart() {
  if (!L.ep) return;
  L.marks = { start: L.frame, end: null };
  renderMarks();
}

export function markEnd() {
  if (!L.ep) return;
  const start = L.marks.start ?? 0;
  if (L.frame < start) return say(`the segment end (frame ${L.frame}) is before its start (frame ${start})`, true);
  L.marks = { start, end: L.frame };
  renderMarks();
  const E = L.el;
  E.segmentText.hidden = false;
  E.segmentText.value = "";
  E.segmentText.focus();
}

export function onSegmentTextKey(ev) {
  const E = L.el;
  if (ev.key === "Escape") { E.segmentText.hidden = true; E.segmentText.blur(); }
  if (ev.key !== "Enter") return;
  const text = E.segmentText.value.trim(), { start, end } = L.marks;
  if (!text || start == null || end == null || !L.ep) return;
  saveSegments([...(L.ep.segments || []), { start, end, text }], "segment").then((ok) => {
    if (!ok) return;
    E.segmentText.hidden = true;
    E.segmentText.blur();
    L.marks = { start: null, end: null };
    renderMarks();
  });
}

/** The marks in the player's read-out and timeline, and as the trim range (curation). */
export function renderMarks() {
  const E = L.el, { start, end } = L.marks, T = L.ep ? L.ep.length : 0;
  E.marks.textContent = `segment: [ ${start ?? "—"}  ] ${end ?? "—"}`;
  E.marks.dataset.start = start ?? "";
  E.marks.dataset.end = end ?? "";
  E.trimStart.value = start ?? 0;
  E.trimEnd.value = end ?? Math.max(0, T - 1);
  if (L.ep) renderTimeline();
}
