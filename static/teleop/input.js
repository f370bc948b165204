// What drives the arm: movement keys, the on-screen pad and a gamepad, summed into one command sent at 30 Hz while
// this page holds the lease; action keys (record, save, e-stop, …) act once per press.

import { isTyping } from "../common/dom.js";
import { showing } from "../common/mount.js";
import { send, toggleControl } from "./client.js";
import { record, setEstop } from "./controls.js";
import { handBack, takeOver } from "./policy.js";
import { S } from "./state.js";

export const HZ = 30;
const AXES = ["vx", "vy", "vz", "yaw"];
// Movement keys: event.code (the physical key, whatever the layout) -> axis, direction, key cap, what it does.
export const MOVE_KEYS = {
  KeyW: ["vx", 1, "W", "forward"], KeyS: ["vx", -1, "S", "back"],
  KeyA: ["vy", 1, "A", "left"], KeyD: ["vy", -1, "D", "right"],
  KeyR: ["vz", 1, "R", "up"], KeyF: ["vz", -1, "F", "down"],
  KeyQ: ["yaw", 1, "Q", "yaw left"], KeyE: ["yaw", -1, "E", "yaw right"],
};
export const ACTION_KEYS = {
  Space: ["Space", "gripper open/close", () => toggleGripper()],
  Enter: ["Enter", "start recording", () => record("start")],
  KeyY: ["Y", "save as success", () => record("save", true)],
  KeyN: ["N", "save as failure", () => record("save", false)],
  KeyX: ["X / Backspace", "discard take", () => record("discard")],
  Backspace: null, // same as X (listed once)
  KeyT: ["T", "re-record (same scene)", () => record("restart")],
  KeyC: ["C", "take / release control", () => toggleControl()],
  KeyO: ["O", "take over from the policy", () => takeOver()],
  KeyP: ["P", "hand back to the policy after a takeover", () => handBack()],
  Escape: ["Esc", "E-STOP (click the button to release)", () => setEstop(true)],
};
export const EXTRA_KEYS = [["Shift (hold)", "slow mode (¼ speed)"], ["1 … 9", "speed scale 11 % … 100 %"]];
// The on-screen pad: label, axis, direction.
export const PAD_BUTTONS = [["↑ fwd", "vx", 1], ["↓ back", "vx", -1], ["← left", "vy", 1], ["→ right", "vy", -1],
  ["⤒ up", "vz", 1], ["⤓ down", "vz", -1], ["⟲ yaw", "yaw", 1], ["⟳ yaw", "yaw", -1]];

export function toggleGripper() {
  S.gripper = S.gripper > 0.5 ? 0 : 1;
}

/** The pad button held down (`dir`) or let go (0). */
export const holdPad = (axis, dir) => (ev) => { ev.preventDefault(); S.pad[axis] = dir; };

function axes() { // keys + pad + gamepad, each axis clipped to [-1, 1]
  const v = { vx: 0, vy: 0, vz: 0, yaw: 0 };
  for (const code of S.keys) { const m = MOVE_KEYS[code]; if (m) v[m[0]] += m[1]; }
  for (const a of AXES) v[a] += S.pad[a];
  const gp = pollGamepad();
  if (gp) for (const a of AXES) v[a] += gp[a];
  for (const a of AXES) v[a] = Math.max(-1, Math.min(1, v[a]));
  return v;
}

function pollGamepad() {
  const pads = navigator.getGamepads ? [...navigator.getGamepads()].filter(Boolean) : [];
  const g = pads[0];
  S.gamepad = g ? g.id : null;
  if (!g) return null;
  const dz = (x) => (Math.abs(x) < 0.15 ? 0 : x);
  const pressed = (i) => !!(g.buttons[i] && g.buttons[i].pressed);
  const a = pressed(0);
  if (a && !S.padGripperWas) toggleGripper();
  S.padGripperWas = a;
  // Left stick: forward/back and left/right; right stick: up/down and yaw; LB/RB also down/up.
  return { vx: -dz(g.axes[1] || 0), vy: -dz(g.axes[0] || 0),
           vz: -dz(g.axes[3] || 0) + (pressed(5) ? 1 : 0) - (pressed(4) ? 1 : 0), yaw: -dz(g.axes[2] || 0) };
}

/** The speed scale in (0, 1]: the slider's level, a quarter of it in slow mode. */
export function speed() {
  return Math.max(0.01, (S.speedLevel / 9) * (S.slow ? 0.25 : 1));
}

/** One command, every 1/HZ s, while this page holds the lease. */
export function tick() {
  if (!S.lease || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  const seq = ++S.seq;
  S.sent.set(seq, performance.now());
  if (S.sent.size > 300) S.sent.delete(S.sent.keys().next().value); // never answered (e.g. e-stop): forget
  send({ type: "cmd", seq, ...axes(), gripper: S.gripper, speed: Number(speed().toFixed(3)) });
}

function onKeyDown(ev) {
  S.slow = ev.shiftKey;
  if (isTyping(ev.target) || !showing("vla-teleop") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const code = ev.code;
  if (MOVE_KEYS[code]) S.keys.add(code);
  else if (/^Digit[1-9]$/.test(code)) { S.speedLevel = Number(code.slice(5)); S.el.speed.value = S.speedLevel; }
  else if (ACTION_KEYS[code] !== undefined) {
    if (!ev.repeat) (code === "Backspace" ? ACTION_KEYS.KeyX : ACTION_KEYS[code])[2]();
  } else return;
  ev.preventDefault();
}

function onKeyUp(ev) {
  S.slow = ev.shiftKey;
  S.keys.delete(ev.code);
}

function releaseAll() { // focus left the window: keyup events will not come, so let go of everything
  S.keys.clear();
  for (const a of AXES) S.pad[a] = 0;
  S.slow = false;
}

export function listen() {
  window.addEventListener("keydown", onKeyDown);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", releaseAll);
  document.addEventListener("visibilitychange", () => document.hidden && releaseAll());
  setInterval(tick, 1000 / HZ);
}
