// VLA Dashboard teleop console: live cameras and commands over /ws/teleop, recording and scene controls over
// /api/robot. Builds itself inside #vla-teleop (a gr.HTML in the Teleop tab, webapp/ui.py).
// Modules: state (window.vlaTeleop), client (WebSocket, frames), input (keys, pad, gamepad, 30 Hz commands),
// controls (REST), hud (read-outs), policy (the Policy panel, asking for help), overlay (heatmaps, words, uncertainty).

import { button, h } from "../common/dom.js";
import { can, reason, whenSignedIn } from "../common/identity.js";
import { mount } from "../common/mount.js";
import { connect, toggleControl } from "./client.js";
import { loadTasks, fillInstructions, record, resetScene, setAutoStop, setEstop } from "./controls.js";
import { render } from "./hud.js";
import { ACTION_KEYS, EXTRA_KEYS, holdPad, listen, MOVE_KEYS, PAD_BUTTONS, toggleGripper } from "./input.js";
import { buildOverlay } from "./overlay.js";
import { buildPolicy, loadModels, showPolicyRole } from "./policy.js";
import { S, say } from "./state.js";

function build(root) {
  S.synced = false;
  const E = (S.el = {});
  E.control = button("Take control", toggleControl, { id: "vla-control" });
  E.lease = h("span", { id: "vla-lease", class: "vla-badge" }, "connecting…");
  E.estop = button("E-STOP", () => setEstop(!S.status.estop), { id: "vla-estop", class: "vla-estop" });

  E.task = h("select", { id: "vla-task", onchange: fillInstructions });
  E.colour = h("select", { id: "vla-colour", onchange: fillInstructions });
  E.instruction = h("select", { id: "vla-instruction" });
  E.custom = h("input", { id: "vla-custom", placeholder: "or free-text instruction", maxlength: 300 });
  E.seed = h("input", { id: "vla-seed", placeholder: "seed (blank: new)", type: "number", min: 0,
                        class: "vla-narrow" });
  E.reset = button("Reset scene", resetScene, { id: "vla-reset" });

  E.dataset = h("input", { id: "vla-dataset", value: localStorage.getItem("vla.dataset") || "teleop", maxlength: 64 });
  E.dataset.addEventListener("change", () => localStorage.setItem("vla.dataset", E.dataset.value.trim()));
  E.autostop = h("input", { id: "vla-autostop", type: "checkbox", onchange: () => setAutoStop(E.autostop.checked) });
  const recButtons = [
    ["● Record", () => record("start"), "vla-rec-start"],
    ["✓ Save success", () => record("save", true), "vla-rec-success"],
    ["✗ Save failure", () => record("save", false), "vla-rec-failure"],
    ["Discard", () => record("discard"), "vla-rec-discard"],
    ["↻ Re-record", () => record("restart"), "vla-rec-restart"],
  ].map(([label, onclick, id]) => button(label, onclick, { id }));
  E.driving = [E.control, E.reset, E.autostop, ...recButtons]; // what needs robot.control (and then the lease)
  E.recinfo = h("span", { id: "vla-recinfo", class: "vla-badge" }, "not recording");
  E.counter = h("span", { id: "vla-counter" }, "");

  E.speed = h("input", { id: "vla-speed", type: "range", min: 1, max: 9, value: S.speedLevel,
                         oninput: () => (S.speedLevel = Number(E.speed.value)) });
  E.speedLabel = h("span", { id: "vla-speed-label" });
  E.cams = h("div", { class: "vla-cams" });
  E.canvases = {};
  E.hud = h("pre", { id: "vla-hud", class: "vla-hud" });
  E.success = h("span", { id: "vla-success", class: "vla-badge" }, "task: —");
  E.msg = h("div", { id: "vla-msg", class: "vla-msg" });

  const pad = h("div", { class: "vla-pad" });
  for (const [label, axis, dir] of PAD_BUTTONS) {
    const b = h("button", { type: "button", class: "vla-padbtn", "data-axis": axis, "data-dir": dir,
                            onpointerdown: holdPad(axis, dir) }, label);
    for (const t of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(t, holdPad(axis, 0));
    pad.append(b);
  }
  pad.append(button("◉ gripper", toggleGripper, { class: "vla-padbtn", id: "vla-pad-gripper" }));

  const [policyRow, helpBanner] = buildPolicy(E);
  const overlayRow = buildOverlay(E);

  const keymap = h("table", { id: "vla-keymap", class: "vla-keymap" });
  const rows = [...Object.values(MOVE_KEYS).map(([, , k, what]) => [k, what]),
                ...Object.values(ACTION_KEYS).filter(Boolean).map(([k, what]) => [k, what]), ...EXTRA_KEYS];
  for (const [k, what] of rows) keymap.append(h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what)));

  root.append(
    h("div", { class: "vla-row" }, E.control, E.lease, E.estop, E.success),
    h("div", { class: "vla-row" }, "Task ", E.task, E.colour, E.instruction, E.custom, E.seed, E.reset),
    h("div", { class: "vla-row" }, "Dataset ", E.dataset, ...recButtons,
      h("label", {}, E.autostop, " stop on success"), E.recinfo, E.counter),
    policyRow,
    helpBanner,
    h("div", { class: "vla-main" },
      h("div", {}, overlayRow, E.words, E.cams, E.msg),
      h("div", { class: "vla-side" }, E.hud, E.chart, E.chartLabel,
        h("div", { class: "vla-row" }, "Speed ", E.speed, E.speedLabel), pad,
        h("details", { open: true }, h("summary", {}, "Keymap (keys act when no text box has focus)"), keymap))),
  );
  loadTasks();
  render();
  whenSignedIn(showRole);
}

/** Disable what the signed-in role may not do, with the reason as the tooltip (the server refuses it anyway). */
function showRole() {
  const allowed = can("robot.control");
  for (const el of S.el.driving) {
    el.disabled = !allowed;
    el.title = allowed ? "" : reason("drive the robot");
  }
  showPolicyRole();
}
mount("vla-teleop", { build, shown: loadModels }); // models registered meanwhile appear when the tab comes back
listen();
setInterval(render, 100);
connect();
