// VLA Dashboard labeling & curation app: browse, play, annotate and curate recorded episodes over the REST API
// (/api/episodes, /api/labeling, /api/datasets, /api/snapshots, /api/exports). Builds itself inside #vla-label
// (a gr.HTML in the Label tab). Plotly is loaded from /vendor when the tab is first shown: everything is offline.
// window.vlaLabel exposes the state (the e2e tests read it).
(() => {
  "use strict";
  const PLOTLY_URL = "/vendor/plotly/plotly.min.js";
  const PAGE_SIZES = [25, 50, 100, 200];
  const SEGMENT_COLOURS = ["#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#e53935", "#6d4c41", "#3949ab"];
  const VOCABULARY = { // until /api/labeling/vocabulary answers
    failure_reasons: ["missed_grasp", "dropped", "wrong_object", "collision", "timeout", "other"],
    quality_flags: ["dropped_frames", "fps_jitter", "idle", "high_jerk", "too_short"],
    sources: ["teleop", "scripted", "policy", "intervention"], success_labels: ["success", "failure", "unlabeled"],
  };
  const USER_NAME = /^[\p{L}\p{N}_ .@+-]{1,64}$/u; // what the API accepts as `user`
  const FILTER_KEYS = ["dataset", "task", "instruction", "source", "operator", "success", "quality_flag"];
  const SORT_KEYS = ["created_at", "id", "length", "task", "operator"];
  const HOTKEYS = [
    ["Space", "play / pause"], ["← / →", "one frame back / forward"], ["Shift + ← / →", "10 frames back / fwd"],
    ["Home / End", "first / last frame"], ["S", "label success"], ["F", "label failure"],
    ["1 … 6", "failure reason (in the order of the reason list)"], ["[", "segment start at the playhead"],
    ["]", "segment end at the playhead, then type its text (Enter saves, Esc cancels)"],
    ["Ctrl + Z", "undo the last change"], ["J / K", "next / previous episode in the list"],
    ["X", "select / unselect the episode for bulk edits"], ["?", "show / hide this sheet"],
  ];

  const L = {
    user: localStorage.getItem("vla.operator") || "", vocab: VOCABULARY, datasets: [], snapshots: [], tasks: [],
    filters: {}, sort: "created_at", order: "desc", offset: 0, limit: PAGE_SIZES[0], rows: [], count: 0,
    selected: new Set(), ep: null, signals: null, history: [], frame: 0, playing: false, videos: [],
    marks: { start: null, end: null }, chartsReady: false, shown: false, listToken: 0, openToken: 0,
    exportJob: null, message: "", el: {},
  };
  window.vlaLabel = L;

  // ---- small helpers ---------------------------------------------------------------------------------------
  const h = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
    }
    e.append(...kids.filter((k) => k != null));
    return e;
  };
  const button = (label, onclick, attrs = {}) =>
    h("button", { type: "button", ...attrs, onclick: (ev) => { ev.currentTarget.blur(); onclick(ev); } }, label);
  const options = (values, labels = {}) => values.map((v) => h("option", { value: v }, labels[v] ?? v));
  function refill(select, opts) { // new options, keeping the choice when it is still offered
    const was = select.value;
    select.replaceChildren(...opts);
    if ([...select.options].some((o) => o.value === was)) select.value = was;
  }
  const cells = (values) => values.map((v) => h("td", {}, String(v)));
  const headRow = (titles) => h("thead", {}, h("tr", {}, ...titles.map((t) => h("th", {}, t))));
  const colour = (i) => SEGMENT_COLOURS[i % SEGMENT_COLOURS.length];
  const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
  const pretty = (name) => String(name).replaceAll("_", " ");
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  const effectiveLabel = (ep) => ep.human_success ?? ep.auto_success;
  function short(value) {
    if (value == null) return "—";
    if (Array.isArray(value)) { // paraphrases: their texts; segments: how many
      if (!value.length) return "[]";
      if (value.every((v) => typeof v === "string")) return short(value.join(" | "));
      return `${value.length} segment${value.length === 1 ? "" : "s"}`;
    }
    const text = typeof value === "string" ? `"${value}"` : JSON.stringify(value);
    return text.length > 48 ? `${text.slice(0, 45)}…` : text;
  }

  // ---- REST ------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, data) {
      super(detailText(data) || `HTTP ${status}`);
      this.status = status;
      this.data = data;
    }
  }
  function detailText(data) {
    const d = data && data.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    return d ? JSON.stringify(d) : "";
  }
  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(`/api/${path}`, init);
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }
  const get = (path) => api("GET", path);
  function failed(error, what) {
    if (error.status === 409 && L.ep) showConflict(error, what);
    else say(`${what}: ${error.message}`, true);
  }
  function say(text, error = false) {
    L.message = text;
    const m = L.el.msg;
    if (m) { m.textContent = text; m.classList.toggle("vla-error", error); }
  }

  // ---- operator --------------------------------------------------------------------------------------------
  function requireUser() {
    if (L.user) return true;
    showUserPrompt();
    say("enter your name first: every change is recorded under it", true);
    return false;
  }
  function showUserPrompt() {
    const E = L.el;
    E.userDialog.hidden = false;
    E.userInput.value = L.user;
    E.userInput.focus();
  }
  function saveUser() {
    const name = L.el.userInput.value.trim();
    if (!USER_NAME.test(name)) {
      return say("a name is 1–64 letters, digits, spaces or . @ + - _", true);
    }
    L.user = name;
    localStorage.setItem("vla.operator", name);
    L.el.userDialog.hidden = true;
    L.el.userInput.blur();
    renderUser();
    say(`labeling as ${name}`);
  }
  function renderUser() {
    L.el.user.textContent = L.user || "(nobody)";
  }

  // ---- DOM -------------------------------------------------------------------------------------------------
  function build(root) {
    root.textContent = "";
    root.dataset.ready = "1";
    const E = (L.el = { root, charts: {} });
    E.user = h("b", { id: "vla-label-user" });
    E.msg = h("span", { id: "vla-label-msg", class: "vla-label-msg", role: "status" });
    E.userInput = h("input", { id: "vla-label-user-input", placeholder: "your name", maxlength: 64,
                               onkeydown: (ev) => ev.key === "Enter" && saveUser() });
    E.userDialog = h("div", { id: "vla-label-user-dialog", class: "vla-label-dialog", hidden: true },
      h("div", {}, h("p", {}, "Who is labeling? Your name is saved with every change you make."), E.userInput,
        button("Start labeling", saveUser, { id: "vla-label-user-save" })));
    E.conflictText = h("span", { id: "vla-label-conflict-text" });
    E.conflict = h("div", { id: "vla-label-conflict", class: "vla-label-conflict", hidden: true }, E.conflictText,
      button("Reload episode", reloadAfterConflict, { id: "vla-label-reload" }),
      button("Dismiss", () => (E.conflict.hidden = true)));
    E.help = h("div", { id: "vla-label-help", class: "vla-label-help", hidden: true },
      h("table", {}, ...HOTKEYS.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what)))),
      h("p", {}, "Keys act when no text box has focus."));
    root.append(
      h("div", { class: "vla-label-row vla-label-top" },
        h("span", {}, "Labeling as ", E.user, " (", h("a", { href: "#", id: "vla-label-user-change",
          onclick: (ev) => { ev.preventDefault(); showUserPrompt(); } }, "change"), ")"),
        E.msg, button("? keys", toggleHelp, { id: "vla-label-help-button", title: "hotkeys (?)" })),
      E.userDialog, E.conflict, E.help, buildFilters(), buildBulkBar(),
      h("div", { class: "vla-label-main" },
        h("div", { class: "vla-label-list" }, buildList()),
        h("div", { class: "vla-label-detail" }, buildPlayer(), buildAnnotation(), buildCuration())),
      buildDatasets(),
    );
    renderUser();
    fillVocabulary();
    fillDatasets();
    renderList();
    renderEpisode();
  }

  function buildFilters() {
    const E = L.el;
    const text = (key, placeholder, attrs = {}) =>
      (E[`f_${key}`] = h("input", { id: `vla-label-f-${key}`, placeholder, oninput: debounced(applyFilters),
                                    ...attrs }));
    const select = (key, first) => (E[`f_${key}`] = h("select", { id: `vla-label-f-${key}`, onchange: applyFilters },
      h("option", { value: "" }, first)));
    E.sort = h("select", { id: "vla-label-sort", onchange: applyFilters },
      ...options(SORT_KEYS, { created_at: "recorded" }));
    E.order = h("select", { id: "vla-label-order", onchange: applyFilters }, ...options(["desc", "asc"],
      { desc: "descending", asc: "ascending" }));
    E.limit = h("select", { id: "vla-label-limit", onchange: applyFilters }, ...options(PAGE_SIZES.map(String)));
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
  function debounced(fn, ms = 300) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function buildBulkBar() {
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

  function buildList() {
    const E = L.el;
    E.selectPage = h("input", { type: "checkbox", id: "vla-label-select-page", title: "select the whole page",
                                onchange: (ev) => { selectPage(ev.target.checked); ev.target.blur(); } });
    E.rows = h("tbody", { id: "vla-label-rows" });
    E.count = h("span", { id: "vla-label-count" });
    E.prev = button("‹ Prev", () => turnPage(-1), { id: "vla-label-prev" });
    E.next = button("Next ›", () => turnPage(1), { id: "vla-label-next" });
    const head = ["", "id", "instruction · quality", "dataset", "operator", "length", "label", "reason"];
    return h("div", {},
      h("div", { class: "vla-label-row" }, E.prev, E.next, E.count, button("↻", refreshAll, { title: "refresh" })),
      h("table", { class: "vla-label-table", id: "vla-label-table" },
        h("thead", {}, h("tr", {}, h("th", {}, E.selectPage), ...head.map((t) => h("th", {}, t)))), E.rows));
  }

  function buildPlayer() {
    const E = L.el;
    E.title = h("div", { id: "vla-label-title", class: "vla-label-title" }, "Pick an episode from the list.");
    E.videos = h("div", { id: "vla-label-videos", class: "vla-label-videos" });
    E.play = button("▶ Play", togglePlay, { id: "vla-label-play" });
    E.frame = h("span", { id: "vla-label-frame", class: "vla-label-frame" }, "frame — / —");
    E.scrubber = h("input", { id: "vla-label-scrubber", type: "range", min: 0, max: 0, value: 0, step: 1,
                              oninput: () => seek(Number(E.scrubber.value)) });
    E.timeline = h("div", { id: "vla-label-timeline", class: "vla-label-timeline",
                            onclick: (ev) => seekFromTimeline(ev) });
    E.marks = h("span", { id: "vla-label-marks" });
    E.segmentText = h("input", { id: "vla-label-segment-text", placeholder: "segment text — Enter saves, Esc cancels",
                                 hidden: true, onkeydown: onSegmentTextKey });
    E.charts.state = h("div", { id: "vla-label-chart-state", class: "vla-label-chart" });
    E.charts.action = h("div", { id: "vla-label-chart-action", class: "vla-label-chart" });
    return h("section", { class: "vla-label-player" }, E.title, E.videos,
      h("div", { class: "vla-label-row" }, button("|◀", () => seek(0), { title: "first frame (Home)" }),
        button("◀ 1", () => stepFrames(-1), { id: "vla-label-back", title: "←" }), E.play,
        button("1 ▶", () => stepFrames(1), { id: "vla-label-forward", title: "→" }), E.frame),
      E.scrubber, E.timeline, h("div", { class: "vla-label-row" }, E.marks, E.segmentText),
      E.charts.state, E.charts.action);
  }

  function buildAnnotation() {
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

  function buildCuration() {
    const E = L.el;
    E.trimStart = h("input", { id: "vla-label-trim-start", type: "number", min: 0, class: "vla-num" });
    E.trimEnd = h("input", { id: "vla-label-trim-end", type: "number", min: 0, class: "vla-num" });
    return h("section", { class: "vla-label-row vla-label-curation" }, "Keep frames ", E.trimStart, "–", E.trimEnd,
      button("✂ Trim", trim, { id: "vla-label-trim" }), button("Split at playhead", split, { id: "vla-label-split" }),
      h("span", { class: "vla-muted" }, "(new episodes are made; the original goes to the trash)"));
  }

  function buildDatasets() {
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

  function fillVocabulary() {
    const E = L.el, v = L.vocab;
    if (!E.root) return;
    refill(E.f_source, [h("option", { value: "" }, "any source"), ...options(v.sources)]);
    refill(E.f_success, [h("option", { value: "" }, "any label"), ...options(v.success_labels)]);
    refill(E.f_quality_flag, [h("option", { value: "" }, "any quality"), ...options(v.quality_flags,
      Object.fromEntries(v.quality_flags.map((f) => [f, pretty(f)])))]);
    const reasons = v.failure_reasons.map((r, i) => h("option", { value: r }, `${i + 1} · ${pretty(r)}`));
    refill(E.reason, [h("option", { value: "" }, "— no reason —"), ...reasons]);
    refill(E.bulkReason, [h("option", { value: "" }, "(reason)"), ...reasons.map((o) => o.cloneNode(true))]);
    E.taskList.replaceChildren(...L.tasks.map((t) => h("option", { value: t })));
  }

  // ---- episode browser -------------------------------------------------------------------------------------
  function applyFilters() {
    const E = L.el, f = {};
    for (const key of [...FILTER_KEYS, "from", "to"]) {
      const value = E[`f_${key}`].value.trim();
      if (value) f[key] = value;
    }
    f.trashed = E.f_trashed.checked;
    E.f_trashed.blur();
    if (f.trashed !== !!L.filters.trashed) L.selected.clear();
    Object.assign(L, { filters: f, sort: E.sort.value, order: E.order.value, limit: Number(E.limit.value), offset: 0 });
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
  async function loadList() {
    const token = ++L.listToken;
    try {
      const r = await get(`episodes?${listQuery()}`);
      if (token !== L.listToken) return;
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
  function renderList() {
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
    const value = effectiveLabel(ep), auto = ep.human_success == null && value != null;
    const text = value == null ? "unlabeled" : value ? "✓ success" : "✗ failure";
    const cls = `vla-label-verdict ${value == null ? "" : value ? "vla-yes" : "vla-no"}${auto ? " vla-auto" : ""}`;
    return h("span", { class: cls,
                       title: auto ? "from the sim's automatic check (no operator label yet)" : "operator's label" },
      auto ? `${text} (auto)` : text);
  }
  function flagChips(ep) {
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
  function toggleSelected(id, on) {
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
    if (!ids.length || !requireUser()) return;
    try {
      const r = await api("POST", "episodes/bulk", { user: L.user, episode_ids: ids, op, ...extra });
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
  async function stepEpisode(delta) {
    let i = L.rows.findIndex((r) => L.ep && r.id === L.ep.id);
    i = i < 0 ? 0 : i + delta;
    if (i >= L.rows.length && L.offset + L.rows.length < L.count) { await turnPage(1); i = 0; }
    else if (i < 0 && L.offset > 0) { await turnPage(-1); i = L.rows.length - 1; }
    const row = L.rows[clamp(i, 0, L.rows.length - 1)];
    if (row && (!L.ep || row.id !== L.ep.id)) await openEpisode(row.id);
  }

  // ---- player ----------------------------------------------------------------------------------------------
  async function openEpisode(id, { keepFrame = false } = {}) {
    const token = ++L.openToken;
    stopPlayback();
    try {
      const [ep, signals, history] = await Promise.all([get(`episodes/${id}`),
        get(`episodes/${id}/signals`).catch((e) => (say(`signals: ${e.message}`, true), null)),
        get(`episodes/${id}/history`).catch(() => [])]);
      if (token !== L.openToken) return;
      const frame = keepFrame && L.ep && L.ep.id === id ? L.frame : 0;
      Object.assign(L, { ep, signals, history, frame: clamp(frame, 0, ep.length - 1),
                         marks: { start: null, end: null } });
      L.el.conflict.hidden = true;
      renderList();
      renderEpisode();
      const row = L.el.rows.querySelector(`tr[data-episode-id="${id}"]`);
      if (row) row.scrollIntoView({ block: "nearest" });
      await drawCharts();
    } catch (e) {
      say(`episode ${id}: ${e.message}`, true);
    }
  }
  const reloadEpisode = () => (L.ep ? openEpisode(L.ep.id, { keepFrame: true }) : null);
  function closeEpisode() {
    stopPlayback();
    Object.assign(L, { ep: null, signals: null, history: [], frame: 0 });
    renderEpisode();
  }
  function renderEpisode() {
    const E = L.el, ep = L.ep;
    if (!E.root) return;
    E.root.classList.toggle("vla-no-episode", !ep);
    L.chartsReady = false;
    E.videos.replaceChildren();
    L.videos = [];
    if (!ep) {
      E.title.textContent = "Pick an episode from the list.";
      return clearCharts();
    }
    E.title.replaceChildren(h("b", {}, `Episode ${ep.id}`), ` · ${ep.dataset} · ${ep.task} · ${ep.source} · `,
      `${ep.operator ?? "—"} · ${fmtTime(ep.created_at)} · ${ep.length} frames @ ${ep.fps} fps`,
      ...(ep.deleted_at ? [h("span", { class: "vla-label-chip vla-flag" }, "in the trash")] : []), ...flagChips(ep));
    for (const camera of ep.cameras) {
      const v = h("video", { id: `vla-label-video-${camera}`, class: "vla-label-video", preload: "auto", muted: true,
                             playsinline: true, src: ep.video_urls[camera] });
      v.muted = true;
      E.videos.append(h("figure", {}, v, h("figcaption", {}, camera)));
      L.videos.push(v);
    }
    if (L.videos.length) {
      L.videos[0].addEventListener("ended", () => L.playing && pause(ep.length - 1));
      L.videos[0].addEventListener("loadedmetadata", () => !L.playing && seek(L.frame));
    }
    E.scrubber.max = ep.length - 1;
    renderAnnotation();
    setFrame(L.frame, true);
    renderMarks();
  }
  const timeOf = (frame) => (frame + 0.5) / L.ep.fps; // the middle of the frame: lands inside it
  function seek(frame) {
    if (!L.ep) return;
    if (L.playing) stopPlayback();
    const k = clamp(Math.round(frame), 0, L.ep.length - 1);
    for (const v of L.videos) if (v.readyState > 0) v.currentTime = timeOf(k);
    setFrame(k);
  }
  const stepFrames = (n) => seek(L.frame + n);
  function setFrame(k, force = false) {
    if (k === L.frame && !force) return;
    L.frame = k;
    const E = L.el, T = L.ep ? L.ep.length : 0;
    E.frame.textContent = L.ep ? `frame ${k} / ${T}  ·  ${(k / L.ep.fps).toFixed(2)} s` : "frame — / —";
    E.frame.dataset.frame = k;
    E.scrubber.value = k;
    renderTimeline();
    for (const div of Object.values(E.charts)) movePlayhead(div);
  }
  function togglePlay() {
    if (L.playing) pause();
    else play();
  }
  function play() {
    if (!L.ep || !L.videos.length) return;
    if (L.frame >= L.ep.length - 1) seek(0);
    L.playing = true;
    L.el.play.textContent = "❚❚ Pause";
    for (const v of L.videos) v.play().catch(() => {});
    requestAnimationFrame(followVideo);
  }
  function stopPlayback() {
    L.playing = false;
    for (const v of L.videos) v.pause();
    if (L.el.play) L.el.play.textContent = "▶ Play";
  }
  function pause(atFrame) { // stop and settle every camera on the frame being shown
    stopPlayback();
    seek(atFrame ?? frameOfVideo());
  }
  const frameOfVideo = () => clamp(Math.floor(L.videos[0].currentTime * L.ep.fps), 0, L.ep.length - 1);
  function followVideo() { // while playing: the first camera is the clock, the others and the playhead follow it
    if (!L.playing || !L.ep || !L.videos.length) return;
    const t = L.videos[0].currentTime;
    for (const v of L.videos.slice(1)) if (Math.abs(v.currentTime - t) > 0.1) v.currentTime = t;
    setFrame(frameOfVideo());
    requestAnimationFrame(followVideo);
  }
  function seekFromTimeline(ev) {
    if (!L.ep || ev.target.closest(".vla-label-block")) return;
    const box = L.el.timeline.getBoundingClientRect();
    seek(Math.floor(((ev.clientX - box.left) / box.width) * L.ep.length));
  }
  function renderTimeline() {
    const E = L.el, ep = L.ep;
    if (!ep) return E.timeline.replaceChildren();
    const T = ep.length, pos = (k) => `${(k / T) * 100}%`;
    const blocks = (ep.segments || []).map((s, i) => h("div", {
      class: "vla-label-block", title: `${s.text} (frames ${s.start}–${s.end})`, "data-segment": i,
      style: `left:${pos(s.start)};width:${pos(s.end - s.start + 1)};background:${colour(i)}`,
      onclick: () => seek(s.start) }, s.text));
    const marks = ["start", "end"].filter((m) => L.marks[m] != null).map((m) =>
      h("div", { class: `vla-label-mark vla-mark-${m}`, style: `left:${pos(L.marks[m] + (m === "end" ? 1 : 0))}` }));
    E.timeline.replaceChildren(...blocks, ...marks,
      h("div", { class: "vla-label-head", style: `left:${pos(L.frame + 0.5)}` }));
  }

  // ---- charts ----------------------------------------------------------------------------------------------
  let plotlyLoading = null;
  function loadPlotly() {
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
  async function drawCharts() {
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
    const charts = [["state", sig.state_names, sig.state], ["action", sig.action_names, sig.action]];
    for (const [key, names, rows] of charts) {
      const div = L.el.charts[key];
      const traces = names.map((name, j) => ({ x, y: rows.map((r) => r[j]), name, type: "scatter", mode: "lines",
                                               line: { width: 1.5 } }));
      const layout = { title: { text: key, font: { size: 13 }, x: 0.01 }, height: 230, hovermode: "x",
        margin: { l: 44, r: 8, t: 26, b: 28 }, legend: { font: { size: 10 } }, uirevision: ep.id,
        xaxis: { range: [0, Math.max(1, x.length - 1)], zeroline: false }, shapes: [playheadShape(L.frame)] };
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
  function clearCharts() {
    for (const div of Object.values(L.el.charts || {})) {
      if (window.Plotly) window.Plotly.purge(div);
      div.replaceChildren();
    }
  }
  function movePlayhead(div) { // one relayout in flight per chart; the newest frame wins
    if (!L.chartsReady || div.playheadBusy || div.playheadAt === L.frame) return;
    const k = L.frame;
    div.playheadBusy = true;
    window.Plotly.relayout(div, { "shapes[0].x0": k, "shapes[0].x1": k }).catch(() => {}).finally(() => {
      div.playheadBusy = false;
      div.playheadAt = k;
      if (L.frame !== k) movePlayhead(div);
    });
  }

  // ---- annotation ------------------------------------------------------------------------------------------
  // Writes to the episode run one after another: each sends the version the previous one returned (F then 2
  // typed quickly must not conflict with each other).
  let writes = Promise.resolve();
  function queued(fn) {
    const run = writes.then(fn);
    writes = run.catch(() => {});
    return run;
  }
  const annotate = (changes, what) => queued(() => saveAnnotation(changes, what));
  async function saveAnnotation(changes, what) {
    if (!L.ep || !requireUser()) return false;
    const ep = L.ep;
    try {
      const body = { user: L.user, version: ep.version, ...changes };
      const updated = await api("PATCH", `episodes/${ep.id}/annotation`, body);
      episodeChanged(updated);
      say(`saved ${what} · episode ${updated.id} is at version ${updated.version}`);
      return true;
    } catch (e) {
      failed(e, what);
      if (e.status !== 409) renderAnnotation(); // put the fields back to what is stored
      return false;
    }
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
    const current = error.data && error.data.current_version;
    L.el.conflictText.textContent = `Your ${what} was NOT saved: ` + (current == null ? error.message // e.g. trashed
      : `someone else changed episode ${L.ep.id} (now version ${current}, you had ${L.ep.version}). ` +
        "Reload it to see their change, then redo yours.");
    L.el.conflictText.title = error.message;
    L.el.conflict.hidden = false;
    say(`conflict: ${what} not saved`, true);
  }
  async function reloadAfterConflict() {
    L.el.conflict.hidden = true;
    await reloadEpisode();
    await loadList();
  }
  const setVerdict = (success) => annotate({ human_success: success }, success ? "success label" : "failure label");
  const setReason = (reason) =>
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
  function renderAnnotation() {
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
    E.undo.disabled = !L.history.some((ev) => !ev.undone_by && ev.action !== "undo");
  }
  const undo = () => queued(undoLast);
  async function undoLast() {
    if (!L.ep || !requireUser()) return;
    try {
      const updated = await api("POST", `episodes/${L.ep.id}/undo`, { user: L.user, version: L.ep.version });
      episodeChanged(updated);
      say(`undone · episode ${updated.id} is at version ${updated.version}`);
    } catch (e) {
      failed(e, "undo");
    }
  }

  // ---- segments by hotkey ----------------------------------------------------------------------------------
  function markStart() {
    if (!L.ep) return;
    L.marks = { start: L.frame, end: null };
    renderMarks();
  }
  function markEnd() {
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
  function onSegmentTextKey(ev) {
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
  function renderMarks() {
    const E = L.el, { start, end } = L.marks, T = L.ep ? L.ep.length : 0;
    E.marks.textContent = `segment: [ ${start ?? "—"}  ] ${end ?? "—"}`;
    E.marks.dataset.start = start ?? "";
    E.marks.dataset.end = end ?? "";
    E.trimStart.value = start ?? 0;
    E.trimEnd.value = end ?? Math.max(0, T - 1);
    if (L.ep) renderTimeline();
  }

  // ---- curation --------------------------------------------------------------------------------------------
  const cut = (kind, body, what) => queued(() => cutEpisode(kind, body, what));
  async function cutEpisode(kind, body, what) {
    if (!L.ep || !requireUser()) return;
    const id = L.ep.id;
    try {
      const r = await api("POST", `episodes/${id}/${kind}`, { user: L.user, version: L.ep.version, ...body });
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

  async function loadDatasets() {
    try {
      [L.datasets, L.snapshots] = await Promise.all([get("datasets"), get("snapshots")]);
      fillDatasets();
    } catch (e) {
      say(`datasets: ${e.message}`, true);
    }
  }
  function fillDatasets() {
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
    if (!from || !into || from === into || !requireUser()) return say("pick two different datasets to merge", true);
    if (!confirm(`Move every episode of "${from}" into "${into}"?`)) return;
    try {
      const r = await api("POST", `datasets/${encodeURIComponent(from)}/merge`, { user: L.user, into });
      say(`merged ${from} into ${into}: ${r.moved} episodes moved`);
      await Promise.all([loadDatasets(), loadList()]);
    } catch (e) {
      say(`merge: ${e.message}`, true);
    }
  }
  async function createSnapshot() {
    const E = L.el, name = E.snapName.value.trim();
    if (!name) return say("give the snapshot a name", true);
    if (!requireUser()) return;
    const body = { name, dataset: E.snapDataset.value, user: L.user };
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
  async function startExport() {
    const E = L.el, value = E.exportWhat.value;
    if (!value || !requireUser()) return;
    const at = value.indexOf(":"), kind = value.slice(0, at), name = value.slice(at + 1);
    E.exportStatus.textContent = `exporting ${kind} ${name}…`;
    try {
      showJob(await api("POST", "exports", { user: L.user, [kind]: name }));
    } catch (e) {
      E.exportStatus.textContent = `export failed: ${e.message}`;
      E.exportStatus.dataset.state = "failed";
      say(`export: ${e.message}`, true);
    }
  }
  function showJob(job) {
    const E = L.el;
    L.exportJob = job;
    E.exportProgress.max = Math.max(1, job.total || 0);
    E.exportProgress.value = job.state === "done" ? E.exportProgress.max : job.done || 0;
    E.exportStatus.dataset.state = job.state;
    E.exportStatus.textContent = job.state === "done" ? `done: ${job.out_dir}`
      : job.state === "failed" ? `failed: ${job.error}` : `${job.state} ${job.done} / ${job.total || "?"}…`;
    E.exportStatus.classList.toggle("vla-error", job.state === "failed");
    if (!["done", "failed"].includes(job.state)) setTimeout(() => pollExport(job.id), 400); // queued or running
  }
  async function pollExport(id) {
    try {
      showJob(await get(`exports/${id}`));
    } catch (e) {
      L.el.exportStatus.textContent = `export ${id}: ${e.message}`;
      if (e.status !== 404) setTimeout(() => pollExport(id), 2000); // a hiccup: keep asking
    }
  }

  // ---- keyboard --------------------------------------------------------------------------------------------
  function isTyping(target) {
    if (!target || !target.tagName) return false;
    if (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName)) return true;
    return target.tagName === "INPUT" && !["range", "checkbox", "radio", "button"].includes(target.type);
  }
  function tabShowing() {
    const root = document.getElementById("vla-label");
    return !!(root && root.dataset.ready && root.offsetParent !== null);
  }
  function toggleHelp() {
    L.el.help.hidden = !L.el.help.hidden;
  }
  function onKeyDown(ev) {
    if (!tabShowing() || isTyping(ev.target) || !L.el.userDialog.hidden) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    const reasons = L.vocab.failure_reasons;
    if (ev.repeat && !["ArrowLeft", "ArrowRight"].includes(key)) return; // a held key steps frames, nothing else
    if (ev.ctrlKey || ev.metaKey) {
      if (key !== "z" || ev.shiftKey || ev.altKey) return;
      undo();
    } else if (ev.altKey) {
      return;
    } else if (key === " ") togglePlay();
    else if (key === "ArrowLeft" || key === "ArrowRight") {
      stepFrames((key === "ArrowLeft" ? -1 : 1) * (ev.shiftKey ? 10 : 1));
    }
    else if (key === "Home") seek(0);
    else if (key === "End") seek(L.ep ? L.ep.length - 1 : 0);
    else if (key === "s") setVerdict(true);
    else if (key === "f") setVerdict(false);
    else if (/^[1-9]$/.test(key) && Number(key) <= reasons.length) setReason(reasons[Number(key) - 1]);
    else if (key === "[") markStart();
    else if (key === "]") markEnd();
    else if (key === "j") stepEpisode(1);
    else if (key === "k") stepEpisode(-1);
    else if (key === "x") L.ep && toggleSelected(L.ep.id, !L.selected.has(L.ep.id));
    else if (key === "?") toggleHelp();
    else if (key === "Escape") L.el.help.hidden = true;
    else return;
    ev.preventDefault();
  }

  // ---- start -----------------------------------------------------------------------------------------------
  async function loadVocabulary() {
    try {
      L.vocab = { ...VOCABULARY, ...(await get("labeling/vocabulary")) };
    } catch (e) {
      say(`vocabulary: ${e.message}`, true);
    }
    try {
      L.tasks = (await get("robot/tasks")).map((t) => t.name);
    } catch { /* the task filter stays free text */ }
    fillVocabulary();
  }
  function refreshAll() {
    return Promise.all([loadList(), loadDatasets()]);
  }
  function onShown() { // the Label tab became visible: fetch what may have changed while it was hidden
    if (!L.vocabLoaded) {
      L.vocabLoaded = true;
      loadVocabulary();
      loadPlotly().catch((e) => say(`charts: ${e.message}`, true));
    }
    refreshAll();
    if (!L.user) showUserPrompt();
  }
  function mountIfNeeded() { // Gradio may render (or re-render) the tab after this script runs
    const root = document.getElementById("vla-label");
    if (root && !root.dataset.ready) {
      build(root);
      L.shown = false;
      if (L.ep) drawCharts();
    }
    const showing = tabShowing();
    if (showing && !L.shown) onShown();
    if (!showing && L.playing) pause();
    L.shown = showing;
  }
  window.addEventListener("keydown", onKeyDown);
  setInterval(mountIfNeeded, 250);
  L.api = { openEpisode, seek, loadList, loadDatasets }; // for tests and the console
})();
