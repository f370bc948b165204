// The Models page (training.read; changes need training.write): the registry listed and filtered by name and stage,
// one model in detail (models/detail.js), two compared (models/compare.js), and an archive imported from a file
// (POST /api/models/import: the .tar.gz itself as the body). Builds itself inside #vla-models (webapp/ui.py).

import { ApiError, cookie, get, toSignIn } from "../common/api.js";
import { button, debounced, h, options } from "../common/dom.js";
import { can, reason, whenSignedIn } from "../common/identity.js";
import { mount } from "../common/mount.js";
import { buildCompare, compare, fillCompare } from "./compare.js";
import { buildDetail, openModel, openTab } from "./detail.js";
import { M, say, show, successText } from "./state.js";

const STAGES = ["candidate", "production", "archived"];

export async function load() {
  if (!can("training.read")) return;
  const E = M.el, q = new URLSearchParams();
  if (E.name.value.trim()) q.set("name", E.name.value.trim());
  if (E.stage.value) q.set("stage", E.stage.value);
  let page;
  try {
    page = await get(`models?${q}`); // the newest 200 (the API's default page)
  } catch (e) {
    return say(`models: ${e.message}`, true);
  }
  M.models = page.data;
  E.rows.replaceChildren(...M.models.map((m) => h("tr", { "data-model-id": m.id, "data-stage": m.stage,
    class: M.detail && M.detail.id === m.id ? "vla-models-selected" : "", onclick: () => openModel(m.id) },
  ...[m.id, m.name, `v${m.version}`, m.stage, m.policy_type, show(m.metrics.val_loss),
    successText(m.metrics.closed_loop), m.created_by ?? "—", new Date(m.created_at).toLocaleString()]
    .map((v) => h("td", {}, String(v))))));
  E.count.textContent = page.count > M.models.length
    ? `the newest ${M.models.length} of ${page.count} models (filter by name for older ones)`
    : `${M.models.length} models`;
  E.count.dataset.count = M.models.length;
  fillCompare();
}

/** Upload the chosen .tar.gz as the next version of the typed name (the body is the file, not JSON). */
async function importArchive() {
  const E = M.el, file = E.file.files[0], name = E.importName.value.trim();
  if (!file || !name) return say("choose a .tar.gz and name the model", true);
  try {
    const r = await fetch(`/api/models/import?name=${encodeURIComponent(name)}`, { method: "POST", body: file,
      headers: { "Content-Type": "application/gzip", "X-CSRF-Token": cookie("vla_csrf") } });
    const data = await r.json().catch(() => ({}));
    if (r.status === 401) toSignIn();
    if (!r.ok) throw new ApiError(r.status, data);
    say(`imported ${data.name} v${data.version}`);
    E.file.value = "";
    await load();
    await openModel(data.id);
  } catch (e) {
    say(`import: ${e.message}`, true);
  }
}

function build(root) {
  const E = (M.el = { root });
  const refilter = debounced(load);
  E.msg = h("span", { id: "vla-models-msg", class: "vla-models-msg", role: "status" });
  E.name = h("input", { id: "vla-models-f-name", placeholder: "name", oninput: refilter, maxlength: 64 });
  E.stage = h("select", { id: "vla-models-f-stage", onchange: load },
    ...options(["", ...STAGES], { "": "every stage" }));
  E.count = h("span", { id: "vla-models-count" });
  E.rows = h("tbody", { id: "vla-models-rows" });
  E.file = h("input", { id: "vla-models-import-file", type: "file", accept: ".tar.gz,.tgz,application/gzip" });
  E.importName = h("input", { id: "vla-models-import-name", placeholder: "register as (name)", maxlength: 64 });
  E.importGo = button("Import", importArchive, { id: "vla-models-import" });
  root.append(
    h("div", { class: "vla-models-row" }, "Filter ", E.name, E.stage, button("Refresh", load,
      { id: "vla-models-refresh" }), E.count, E.msg),
    h("div", { class: "vla-models-row" }, "Import an archive ", E.file, E.importName, E.importGo),
    h("table", { class: "vla-models-table" },
      h("thead", {}, h("tr", {}, ...["id", "name", "version", "stage", "policy", "val loss", "closed-loop success",
        "by", "created"].map((t) => h("th", {}, t)))), E.rows),
    buildDetail(), buildCompare());
  whenSignedIn(() => {
    const write = can("training.write");
    for (const el of [E.file, E.importName, E.importGo]) {
      el.disabled = !write;
      el.title = write ? "" : reason("import models");
    }
    load();
  });
  if (M.pending != null || M.detail) openModel(M.pending ?? M.detail.id); // a new container: reopen
  M.pending = null;
}

/** Open the Models tab on model `id` (the Train tab's model links). */
function showModel(id) {
  openTab("Models");
  if (M.el.detail) openModel(id);
  else M.pending = id; // Gradio builds the tab's container when it is first shown: open it then
}

mount("vla-models", { build, shown: load });
M.api = { load, open: openModel, show: showModel, compare };
