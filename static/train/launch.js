// The Train tab's launch form: a snapshot (or a new one frozen from a dataset, optionally only its successes), a
// base model to fine-tune (none: from scratch), a preset and options over it, and Launch (POST /api/training/jobs).
// Launching needs training.write and making a snapshot curation.write: otherwise the buttons are disabled, with
// the reason as their tooltip (the server refuses regardless).

import { api, get } from "../common/api.js";
import { button, h, options, refill } from "../common/dom.js";
import { can, reason } from "../common/identity.js";
import { T, say } from "./state.js";

const NUMBERS = [ // [option, label, step of the input]; empty: the preset's value
  ["steps", "steps", "1"], ["minutes", "minutes", "any"], ["batch_size", "batch", "1"], ["lr", "lr", "any"],
  ["seed", "seed", "1"],
];

function guard(el, permission, what) {
  el.disabled = !can(permission);
  el.title = el.disabled ? reason(what) : "";
}

export function buildLaunch(onLaunched) {
  const E = T.el;
  E.snapshot = h("select", { id: "vla-train-snapshot" });
  E.snapDataset = h("select", { id: "vla-train-snap-dataset" });
  E.snapName = h("input", { id: "vla-train-snap-name", placeholder: "new snapshot's name", maxlength: 64 });
  E.snapSuccess = h("select", { id: "vla-train-snap-success" },
    ...options(["", "success", "failure"], { "": "all episodes", success: "successes", failure: "failures" }));
  E.snapMake = button("Make snapshot", makeSnapshot, { id: "vla-train-snap-make" });
  E.base = h("select", { id: "vla-train-base" });
  E.preset = h("select", { id: "vla-train-preset" });
  E.modelName = h("input", { id: "vla-train-model-name", placeholder: "model name (default: the dataset)",
                             maxlength: 64 });
  E.opt = {};
  for (const [key, , step] of NUMBERS) {
    E.opt[key] = h("input", { id: `vla-train-opt-${key}`, type: "number", step, min: 0, class: "vla-train-num",
                              placeholder: "preset" });
  }
  E.select = h("input", { id: "vla-train-select", type: "checkbox", checked: true });
  E.selectEpisodes = h("input", { id: "vla-train-select-episodes", type: "number", min: 1, max: 200,
                                  class: "vla-train-num", placeholder: "preset" });
  E.advanced = h("textarea", { id: "vla-train-advanced", rows: 2, cols: 60, spellcheck: "false",
    placeholder: '{"policy_overrides": {"d_model": 64}, "ema_decay": 0.999}' });
  E.launch = button("Launch", () => launch(onLaunched), { id: "vla-train-launch", class: "vla-train-primary" });
  return h("fieldset", { class: "vla-train-launch" }, h("legend", {}, "Launch a training job"),
    h("div", { class: "vla-train-row" }, "Snapshot ", E.snapshot, " or freeze ", E.snapDataset, E.snapSuccess,
      " as ", E.snapName, E.snapMake),
    h("div", { class: "vla-train-row" }, "Base model ", E.base, " preset ", E.preset, " name ", E.modelName),
    h("div", { class: "vla-train-row" }, ...NUMBERS.flatMap(([key, label]) => [` ${label} `, E.opt[key]]),
      h("label", { title: "choose the checkpoint by closed-loop success on validation seeds (sim rollouts)" },
        " ", E.select, " select by rollouts"), " rollouts per task and colour ", E.selectEpisodes),
    h("details", { class: "vla-train-row", id: "vla-train-advanced-box" },
      h("summary", {}, "advanced options (JSON, over the fields above)"),
      E.advanced, h("div", { id: "vla-train-options-list", class: "vla-train-hint" })),
    h("div", { class: "vla-train-row" }, E.launch));
}

/** Enable what the role may use (called once the user is known, and after every refill). */
export function guardLaunch() {
  const E = T.el;
  guard(E.launch, "training.write", "launch training");
  guard(E.snapMake, "curation.write", "make snapshots");
}

/** Fill the pickers from the server: snapshots, datasets, registered models, presets and the options they take. */
export async function loadChoices() {
  const C = T.choices;
  try {
    [C.snapshots, C.datasets, C.models, { presets: C.presets, options: C.options }] = await Promise.all([
      get("snapshots"), get("datasets"), get("models").then((r) => r.data), get("training/presets")]);
  } catch (e) {
    return say(`choices: ${e.message}`, true);
  }
  const E = T.el;
  refill(E.snapshot, C.snapshots.map((s) => h("option", { value: s.name },
    `${s.name} (${s.dataset}, ${s.num_episodes} episodes)`)));
  refill(E.snapDataset, C.datasets.map((d) => h("option", { value: d.name }, `${d.name} (${d.num_episodes})`)));
  refill(E.base, [h("option", { value: "" }, "none: from scratch"), ...C.models.filter((m) => m.stage !== "archived")
    .map((m) => h("option", { value: m.id }, `${m.name} v${m.version} (${m.stage})`))]);
  refill(E.preset, Object.entries(C.presets).map(([name, p]) =>
    h("option", { value: name }, `${name} (${p.minutes} min)`)));
  if (!E.preset.dataset.chosen && C.presets.quick) { E.preset.value = "quick"; E.preset.dataset.chosen = "1"; }
  T.el.root.querySelector("#vla-train-options-list").textContent = `options: ${C.options.join(", ")}`;
  guardLaunch();
}

async function makeSnapshot() {
  const E = T.el, name = E.snapName.value.trim(), dataset = E.snapDataset.value;
  if (!name || !dataset) return say("pick a dataset and name the snapshot", true);
  const body = { name, dataset, ...(E.snapSuccess.value ? { success: E.snapSuccess.value } : {}) };
  try {
    const s = await api("POST", "snapshots", body);
    say(`snapshot ${s.name}: ${s.num_episodes} episodes of ${s.dataset}`);
    E.snapName.value = "";
    await loadChoices();
    E.snapshot.value = s.name;
  } catch (e) {
    say(`snapshot: ${e.message}`, true);
  }
}

/** The launch body from the form; throws an Error with a readable message for bad advanced JSON. */
function body() {
  const E = T.el, options = {};
  for (const [key] of NUMBERS) {
    if (E.opt[key].value !== "") options[key] = Number(E.opt[key].value);
  }
  if (E.advanced.value.trim()) {
    let extra;
    try {
      extra = JSON.parse(E.advanced.value);
    } catch (e) {
      throw new Error(`advanced options are not JSON: ${e.message}`);
    }
    if (!extra || typeof extra !== "object" || Array.isArray(extra)) throw new Error("advanced options: a JSON object");
    Object.assign(options, extra);
  }
  const b = { snapshot: E.snapshot.value, preset: E.preset.value, options, select: E.select.checked };
  if (E.base.value) b.base_model = Number(E.base.value);
  if (E.modelName.value.trim()) b.model_name = E.modelName.value.trim();
  if (E.selectEpisodes.value !== "") b.select_episodes = Number(E.selectEpisodes.value);
  return b;
}

async function launch(onLaunched) {
  if (!T.el.snapshot.value) return say("pick a snapshot first (or make one from a dataset)", true);
  try {
    const job = await api("POST", "training/jobs", body());
    say(`job ${job.id} queued`);
    await onLaunched(job);
  } catch (e) {
    say(`launch: ${e.message}`, true);
  }
}
