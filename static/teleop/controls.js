// The console's REST side (/api/robot): the task picker and scene reset, recording, e-stop. A refused call is
// shown in the console's message line.

import { api, get } from "../common/api.js";
import { h } from "../common/dom.js";
import { render } from "./hud.js";
import { S, say } from "./state.js";

export let TASKS = []; // [{name, colours, templates}] from /api/robot/tasks

/** POST /api/robot/<path>: the reply, or null once the error is on screen. */
export async function robot(path, body) {
  try {
    return await api("POST", `robot/${path}`, body);
  } catch (e) {
    say(`${path}: ${e.message}`, true);
    return null;
  }
}

export async function loadTasks() {
  try {
    TASKS = await get("robot/tasks");
  } catch (e) {
    return say(`tasks: ${e.message}`, true);
  }
  S.el.task.replaceChildren(...TASKS.map((t) => h("option", { value: t.name }, t.name)));
  fillInstructions();
}

export function fillInstructions() {
  const E = S.el, t = TASKS.find((x) => x.name === E.task.value);
  if (!t) return;
  const colour = E.colour.value;
  E.colour.replaceChildren(...t.colours.map((c) => h("option", { value: c }, c)));
  E.colour.value = t.colours.includes(colour) ? colour : (S.status.colour || t.colours[0]);
  E.instruction.replaceChildren(...t.templates.map((tpl) => {
    const text = tpl.replaceAll("{colour}", E.colour.value);
    return h("option", { value: text }, text);
  }));
  const current = S.status.instruction;
  if (current && [...E.instruction.options].some((o) => o.value === current)) E.instruction.value = current;
}

export async function resetScene() {
  const E = S.el, seed = E.seed.value === "" ? null : Number(E.seed.value);
  const st = await robot("reset", { seed, task: E.task.value || null, colour: E.colour.value || null,
                                    instruction: E.custom.value.trim() || E.instruction.value || null });
  if (st) say(`scene reset (seed ${st.seed ?? "?"})`);
}

export async function record(what, success) {
  const rec = S.status.recording || {};
  const who = { dataset: S.el.dataset.value.trim() || "teleop" }; // the operator is the signed-in user
  if (what === "start") {
    if (!rec.active && (await robot("recording/start", who))) say("recording…");
  } else if (what === "save") {
    S.expectStop = true;
    const r = await robot("recording/save", { success });
    if (r) { countEpisode(); say(`saved episode ${r.episode_id} as ${success ? "success" : "failure"}`); }
  } else if (what === "discard") {
    S.expectStop = true;
    if (await robot("recording/discard")) say("take discarded");
  } else if (what === "restart") {
    S.expectStop = true;
    if (await robot("recording/restart", who)) say("re-recording from the same scene");
  }
}

export const setAutoStop = (enabled) => robot("recording/auto-stop", { enabled });

export function countEpisode() {
  S.episodes += 1;
  sessionStorage.setItem("vla.episodes", S.episodes);
}

export async function setEstop(engaged) {
  const st = await robot("estop", { engaged });
  if (st) { S.status = st; render(); }
}
