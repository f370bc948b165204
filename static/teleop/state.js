// The teleop console's state, one object shared by its modules. It is window.vlaTeleop too: the browser tests and
// bench/bench_browser.py read the stream counters and the measured command→frame latencies from it.

export const S = {
  ws: null, clientId: null, lease: false, holder: null, seq: 0, sent: new Map(), // seq -> performance.now() sent
  keys: new Set(), pad: { vx: 0, vy: 0, vz: 0, yaw: 0 }, gamepad: null, padGripperWas: false,
  gripper: 0, speedLevel: 9, slow: false, status: {}, state: [], tick: -1, synced: false,
  lastDrawnTick: -1, dropped: 0, drawn: 0, drawTimes: [], fps: 0, latencies: [], decoding: false, pending: null,
  episodes: Number(sessionStorage.getItem("vla.episodes") || 0), expectStop: false, wasRecording: false,
  message: "", el: {},
};
window.vlaTeleop = S;

/** Show a line in the console's message box (red when `error`). */
export function say(text, error = false) {
  S.message = text;
  if (S.el.msg) { S.el.msg.textContent = text; S.el.msg.classList.toggle("vla-error", error); }
}

/** Percentile `p` (0–100) of `values`, nearest rank; null when there are none. */
export function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

S.stats = () => ({ fps: S.fps, dropped: S.dropped, p50: percentile(S.latencies, 50), p95: percentile(S.latencies, 95),
                   n: S.latencies.length });
