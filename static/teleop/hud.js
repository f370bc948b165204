// The console's read-outs, redrawn ten times a second: lease and e-stop badges, recording, the task's success, and
// the HUD (stream rate, command→frame latency, source, state vector, the policy's latency and chunk age,
// interventions), the Policy panel and the uncertainty chart.

import { fillInstructions, TASKS } from "./controls.js";
import { speed } from "./input.js";
import { drawChart } from "./overlay.js";
import { renderPolicy } from "./policy.js";
import { percentile, S } from "./state.js";

const ms = (x) => (x == null ? "—" : `${x.toFixed(0)} ms`);

export function render() {
  const E = S.el;
  if (!E.hud) return;
  const st = S.status, rec = st.recording || {}, recent = S.latencies.slice(-100);
  if (!S.synced && TASKS.length && st.task) { // show the scene's task, colour and instruction once
    E.task.value = st.task;
    fillInstructions();
    E.colour.value = st.colour;
    fillInstructions();
    S.synced = true;
  }
  E.speedLabel.textContent = `${Math.round(speed() * 100)} %${S.slow ? " (slow)" : ""}`;
  const holder = st.controller ?? S.holder;
  E.lease.textContent = S.lease ? "you control" : holder ? `watching (${holder} controls)` : "watching (free)";
  E.lease.className = `vla-badge ${S.lease ? "vla-ok" : ""}`;
  E.control.textContent = S.lease ? "Release control" : "Take control";
  E.estop.textContent = st.estop ? "E-STOP ENGAGED — click to release" : "E-STOP";
  E.estop.classList.toggle("vla-engaged", !!st.estop);
  E.success.textContent = `task: ${st.success ? "SUCCESS ✓" : "not yet"}`;
  E.success.className = `vla-badge ${st.success ? "vla-ok" : ""}`;
  E.recinfo.textContent = rec.active ? `● REC ${(rec.elapsed_s || 0).toFixed(1)} s · ${rec.frames || 0} frames`
    : "not recording";
  E.recinfo.className = `vla-badge ${rec.active ? "vla-rec" : ""}`;
  E.counter.textContent = `episodes this session: ${S.episodes}`;
  if (rec.auto_stop !== undefined) E.autostop.checked = !!rec.auto_stop;
  const state = (S.state || []).map((x) => (x == null ? "NaN" : x.toFixed(3))).join(" ");
  E.hud.textContent = [
    `stream      ${S.fps} fps   tick ${S.tick}   dropped ${S.dropped}`,
    `cmd→frame   last ${ms(recent[recent.length - 1])}  p50 ${ms(percentile(recent, 50))}  ` +
      `p95 ${ms(percentile(recent, 95))}`,
    `source      ${st.source ?? "—"}   gripper cmd ${S.gripper}   gamepad ${S.gamepad ?? "none"}`,
    `instruction ${st.instruction ?? "—"}`,
    `state       ${state}`,
    `rejected    ${(st.counters || {}).rejected ?? 0}`,
    ...policyLines(st.policy),
    `interventions ${rec.interventions ?? 0} in this take (${rec.intervention_frames ?? 0} frames)`,
  ].join("\n");
  E.hud.dataset.state = JSON.stringify(S.state || []);
  renderPolicy();
  drawChart();
}

function policyLines(p) {
  if (!p) return ["policy      none loaded"];
  const m = p.model, num = (x) => (x == null ? "—" : x.toFixed(4));
  return [
    `policy      ${m.name} v${m.version ?? "?"}   p50 ${ms(p.latency_ms_p50)}  p95 ${ms(p.latency_ms_p95)}   ` +
      `chunk age ${p.chunk_age_ticks ?? "—"} ticks`,
    `uncertainty ${num(p.uncertainty)}  mean ${num(p.uncertainty_mean)}  max ${num(p.uncertainty_max)}  ` +
      `threshold ${num(p.threshold)}`,
    `help        ${p.help.asking ? "ASKING" : "not asking"}   asked ${p.help.prompts}× (after ${p.help.k} in a row)` +
      `   predictions ${p.predictions}   errors ${p.errors}`,
    ...(p.in_flight_s > 1 ? [`inference   waiting ${p.in_flight_s.toFixed(1)} s for a prediction` +
      (p.restarts ? `   (${p.restarts} restart(s))` : "")] : []),
    ...(p.last_error ? [`last error  ${p.last_error.split("\n")[0]}`] : []),
  ];
}
