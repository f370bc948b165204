// The Policy panel: load a registered model onto the robot (engineers and admins: GET /api/models, POST
// /api/robot/policy), start and stop it (the lease holder: POST /api/robot/source), and step in when it asks for help
// (take over, continue, stop; hand back after a takeover). Routes: webapp/routers/policy.py.

import { api, get } from "../common/api.js";
import { button, h, refill } from "../common/dom.js";
import { can, reason } from "../common/identity.js";
import { robot } from "./controls.js";
import { render } from "./hud.js";
import { S, say } from "./state.js";

S.wasAsking = false;

/** The panel's row and the ask-for-help banner, into S.el: [row, banner]. */
export function buildPolicy(E) {
  E.policyModel = h("select", { id: "vla-policy-model", title: "a registered model (GET /api/models)" });
  E.policyK = h("input", { id: "vla-policy-k", type: "number", min: 1, max: 300, value: 5, class: "vla-tiny",
                           title: "ask for help after this many uncertain predictions in a row" });
  E.policyAsk = h("input", { id: "vla-policy-ask", type: "checkbox", checked: true });
  E.policyLoader = h("span", { id: "vla-policy-loader", class: "vla-inline", hidden: true },
    E.policyModel, button("Load", loadPolicy, { id: "vla-policy-load" }),
    button("Unload", unloadPolicy, { id: "vla-policy-unload" }), " help after ", E.policyK,
    h("label", {}, E.policyAsk, " ask for help"));
  E.policyStart = button("▶ Start policy", () => setSource("policy"), { id: "vla-policy-start" });
  E.policyStop = button("■ Stop policy", () => setSource("idle"), { id: "vla-policy-stop" });
  E.handback = button("↩ Hand back (P)", handBack, { id: "vla-handback", hidden: true });
  E.policyInfo = h("span", { id: "vla-policy-info", class: "vla-badge" }, "no policy loaded");
  E.helpText = h("span", {}, "");
  E.help = h("div", { id: "vla-help", class: "vla-help", role: "alertdialog", hidden: true },
    h("strong", {}, "The policy asks for help "), E.helpText,
    button("Take over (O)", () => takeOver(), { id: "vla-takeover" }),
    E.expertTakeover = button("Let the expert correct", () => takeOver("expert"), { id: "vla-expert-takeover" }),
    button("Continue", keepGoing, { id: "vla-continue" }),
    button("Stop", () => setSource("idle"), { id: "vla-stop-policy" }));
  E.stepIn = [...E.help.querySelectorAll("button"), E.policyStart, E.policyStop, E.handback];
  return [h("div", { class: "vla-row", id: "vla-policy" }, "Policy ", E.policyLoader, E.policyStart, E.policyStop,
    E.handback, E.policyInfo), E.help];
}

/** Once the user is known: the model picker for those who may load (training.write), and its list. */
export function showPolicyRole() {
  S.el.policyLoader.hidden = !can("training.write");
  for (const el of S.el.stepIn) el.title = can("robot.control") ? "" : reason("drive the robot");
  loadModels();
}

/** The registered models into the picker (newest first; archived ones left out). */
export async function loadModels() {
  if (!can("training.write") || !S.el.policyModel) return;
  let page;
  try {
    page = await get("models?limit=200");
  } catch (e) {
    return say(`models: ${e.message}`, true);
  }
  const live = page.data.filter((m) => m.stage !== "archived");
  refill(S.el.policyModel, live.map((m) => h("option", { value: m.id }, `${m.name} v${m.version} (${m.stage})`)));
}

async function loadPolicy() {
  const E = S.el, k = Number(E.policyK.value);
  if (!E.policyModel.value) return say("no model to load: register one on the Models page", true);
  say("loading the model…");
  const st = await robot("policy", { model_id: Number(E.policyModel.value), help_k: Number.isInteger(k) ? k : 5,
                                     ask_for_help: E.policyAsk.checked });
  if (st) { S.status = st; say(`policy loaded: ${st.policy.model.name} v${st.policy.model.version}`); render(); }
}

async function unloadPolicy() {
  try {
    S.status = await api("DELETE", "robot/policy");
    say("policy unloaded");
    render();
  } catch (e) {
    say(`unload: ${e.message}`, true);
  }
}

async function setSource(name) {
  const st = await robot("source", { name });
  if (st) { S.status = st; say(name === "policy" ? "the policy drives" : "policy stopped"); render(); }
}

/** Drive instead of the policy (button, banner, hotkey O), or let the sim's scripted expert correct it from where
 *  the arm is (by = "expert"); the take records the correction either way. */
export async function takeOver(by = "teleop") {
  const st = await robot("policy/takeover", { by });
  if (st) {
    S.status = st;
    say(by === "expert" ? "the scripted expert corrects: hand back (P) when it is done" : "you drive: hand back (P) when done");
    render();
  }
}

/** Give control back to the policy after a takeover (button, hotkey P). */
export async function handBack() {
  const st = await robot("policy/handback");
  if (st) { S.status = st; say("control handed back to the policy"); render(); }
}

async function keepGoing() {
  const st = await robot("policy/continue");
  if (st) { S.status = st; say("the policy continues"); render(); }
}

/** The panel's read-outs and what may be pressed now (from hud.js's render). */
export function renderPolicy() {
  const E = S.el, st = S.status, p = st.policy, drive = can("robot.control") && S.lease;
  // After a takeover the monitor still says asking (until hand back or continue): only ask while the policy drives.
  const asking = !!(p && p.help && p.help.asking) && st.source === "policy";
  if (asking && !S.wasAsking) say("the policy is unsure and asks for help: take over (O), continue or stop", true);
  S.wasAsking = asking;
  E.help.hidden = !asking;
  if (p) E.helpText.textContent = `(uncertainty ${p.uncertainty ?? "—"} above ${p.threshold ?? "—"}, `
    + `${p.help.k} predictions in a row) `;
  E.expertTakeover.hidden = !(st.sources || []).includes("expert");  // the sim has one; a real arm does not
  E.handback.hidden = !(p && ["teleop", "expert"].includes(st.source));
  E.policyStart.disabled = !p || !drive || st.source === "policy";
  E.policyStop.disabled = !p || !drive || st.source !== "policy";
  for (const el of [...E.help.querySelectorAll("button"), E.handback]) el.disabled = !drive;
  const what = !p ? "" : st.source === "policy" ? (asking ? " · asking for help" : " · driving")
    : st.source === "teleop" ? " · operator drives" : st.source === "expert" ? " · expert corrects" : " · loaded";
  E.policyInfo.textContent = p ? `${p.model.name} v${p.model.version ?? "?"}${what}` : "no policy loaded";
  E.policyInfo.className = `vla-badge ${asking ? "vla-rec" : p && st.source === "policy" ? "vla-ok" : ""}`;
}
