// VLA Dashboard labeling & curation app: browse, play, annotate and curate recorded episodes over the REST API
// (/api/episodes, /api/labeling, /api/datasets, /api/snapshots, /api/exports). Builds itself inside #vla-label
// (a gr.HTML in the Label tab, webapp/ui.py). Everything is served by the app: it works offline.
// Modules: state (window.vlaLabel), browser (filters, list, bulk bar), player (videos, scrubber, timeline),
// charts (plotly), annotation (labels, segments, history, undo), curation (trim/split, datasets, snapshots,
// export), keys (hotkeys), user (who is signed in; what the role may change).

import { get } from "../common/api.js";
import { button, h } from "../common/dom.js";
import { mount } from "../common/mount.js";
import { buildAnnotation, buildConflictBanner, fillReasons } from "./annotation.js";
import { buildBulkBar, buildFilters, buildList, fillBrowserVocabulary, loadList, renderList } from "./browser.js";
import { drawCharts, loadPlotly } from "./charts.js";
import { buildCuration, buildDatasets, fillDatasets, loadDatasets } from "./curation.js";
import { buildHelp, listen, toggleHelp } from "./keys.js";
import { buildPlayer, openEpisode, pause, renderEpisode, seek } from "./player.js";
import { L, say } from "./state.js";
import { buildUserBadge, renderUser } from "./user.js";

let vocabLoaded = false;

function build(root) {
  const E = (L.el = { root, charts: {} });
  E.msg = h("span", { id: "vla-label-msg", class: "vla-label-msg", role: "status" });
  root.append(
    h("div", { class: "vla-label-row vla-label-top" }, buildUserBadge(),
      E.msg, button("? keys", toggleHelp, { id: "vla-label-help-button", title: "hotkeys (?)" })),
    buildConflictBanner(), buildHelp(), buildFilters(), buildBulkBar(),
    h("div", { class: "vla-label-main" },
      h("div", { class: "vla-label-list" }, buildList(refreshAll)),
      h("div", { class: "vla-label-detail" }, buildPlayer(), buildAnnotation(), buildCuration())),
    buildDatasets(),
  );
  renderUser();
  fillVocabulary();
  fillDatasets();
  renderList();
  renderEpisode();
  if (L.ep) drawCharts(); // Gradio rendered the tab again: the open episode stays open
}

function fillVocabulary() {
  if (!L.el.root) return;
  fillBrowserVocabulary();
  fillReasons();
}

/** The closed lists the server owns (failure reasons in hotkey order, quality flags, sources, …) and the tasks. */
async function loadVocabulary() {
  try {
    L.vocab = { ...L.vocab, ...(await get("labeling/vocabulary")) };
  } catch (e) {
    say(`vocabulary: ${e.message}`, true);
  }
  try {
    L.tasks = (await get("robot/tasks")).map((t) => t.name);
  } catch (e) {
    say(`tasks: ${e.message} (the task filter takes any text)`, true);
  }
  fillVocabulary();
}

function refreshAll() {
  return Promise.all([loadList(), loadDatasets()]);
}

function shown() { // the Label tab became visible: fetch what may have changed while it was hidden
  if (!vocabLoaded) {
    vocabLoaded = true;
    loadVocabulary();
    loadPlotly().catch((e) => say(`charts: ${e.message}`, true));
  }
  refreshAll();
}

mount("vla-label", { build, shown, hidden: () => L.playing && pause() });
listen();
L.api = { openEpisode, seek, loadList, loadDatasets }; // for tests and the browser's console
