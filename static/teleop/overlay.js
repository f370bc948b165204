// The policy's overlays, drawn in the browser from each frame header's `overlay` (PolicySource.overlay in
// backend/control/policy_source.py; present only while a policy drives and overlays are on): an attention heatmap
// on a canvas over each camera (map choice, opacity), the instruction's words (click one: that word's map; click it
// again: back to the chosen map), the predicted chunk as the tool's planned path on the front camera (overlay.path:
// image fractions from the robot's forward kinematics and camera projection) and a strip chart of the last 10 s of
// uncertainty with the threshold line.

import { api } from "../common/api.js";
import { h, options } from "../common/dom.js";
import { can } from "../common/identity.js";
import { S, say } from "./state.js";

const MAPS = ["attention", "attention_rollout", "keypoint_attention"];
const MAP_LABELS = { attention: "attention", attention_rollout: "attention rollout", keypoint_attention: "keypoints" };
const CHART_MS = 10_000; // the strip chart's width in time

Object.assign(S, {
  overlay: null, // the newest frame header's overlay (null while no policy drives)
  overlayMap: localStorage.getItem("vla.overlayMap") || "attention",
  overlayWord: null, // index of the clicked instruction word, or null
  overlayOpacity: Number(localStorage.getItem("vla.overlayOpacity") || 0.5),
  overlayPainted: 0, // frames whose heatmaps were drawn
  pathPainted: 0, // frames whose planned path was drawn on the front camera
  uncertaintyTrace: [], // [{t: performance.now(), u, threshold}] one per prediction
  uncertaintyPoints: 0, // points the chart drew last time
});
let wordsKey = null, shownTick = -1, cleared = true;

/** The overlay controls (map, opacity, on/off), the words row and the uncertainty chart, into S.el. */
export function buildOverlay(E) {
  E.overlayMap = h("select", { id: "vla-overlay-map", title: "which map the heatmap shows" },
    ...options(MAPS, MAP_LABELS));
  E.overlayMap.value = MAPS.includes(S.overlayMap) ? S.overlayMap : "attention";
  E.overlayMap.addEventListener("change", () => {
    S.overlayMap = E.overlayMap.value;
    localStorage.setItem("vla.overlayMap", S.overlayMap);
  });
  E.overlayOpacity = h("input", { id: "vla-overlay-opacity", type: "range", min: 0, max: 1, step: 0.05,
                                  value: S.overlayOpacity, oninput: () => setOpacity(Number(E.overlayOpacity.value)) });
  E.overlayOn = h("input", { id: "vla-overlay-enabled", type: "checkbox", checked: true,
                             onchange: () => setOverlays(E.overlayOn.checked) });
  E.words = h("div", { id: "vla-words", class: "vla-words", hidden: true });
  E.chart = h("canvas", { id: "vla-uncertainty-chart", class: "vla-chart", width: 320, height: 70 });
  E.chartLabel = h("div", { id: "vla-uncertainty-label", class: "vla-chart-label" }, "uncertainty: no policy driving");
  wordsKey = null;
  return h("div", { class: "vla-row", id: "vla-overlay-controls" }, "Overlay ", E.overlayMap, " opacity ",
    E.overlayOpacity, h("label", { title: "frames carry the policy's maps (lease holder)" }, E.overlayOn, " on"));
}

function setOpacity(x) {
  S.overlayOpacity = x;
  localStorage.setItem("vla.overlayOpacity", x);
  for (const c of document.querySelectorAll("#vla-teleop canvas.vla-overlay")) c.style.opacity = x;
}

async function setOverlays(enabled) {
  try {
    await api("POST", "robot/policy/overlays", { enabled });
  } catch (e) {
    S.el.overlayOn.checked = !enabled;
    say(`overlays: ${e.message}`, true);
  }
}

/** The canvas drawn over camera `name`'s image (made by client.js's ensureCanvas beside it). */
export function overlayCanvas(name) {
  const c = h("canvas", { id: `vla-overlay-${name}`, class: "vla-overlay", width: 96, height: 96 });
  c.style.opacity = S.overlayOpacity;
  return c;
}

/** Every frame header, drawn or not: keep the newest overlay and one chart point per prediction. */
export function noteOverlay(overlay) {
  S.overlay = overlay || null;
  if (!overlay || overlay.tick === shownTick) return;
  shownTick = overlay.tick;
  S.uncertaintyTrace.push({ t: performance.now(), u: overlay.uncertainty, threshold: overlay.threshold });
  if (S.uncertaintyTrace.length > 3000) S.uncertaintyTrace.splice(0, 1000); // the chart trims it too, once built
}

/** After frame `f`'s images are on their canvases: its heatmaps over them (cleared when it has none). */
export function paintOverlay(f) {
  const ov = f.overlay;
  if (!ov && cleared) return;
  showWords(ov);
  for (const [cam] of f.cameras) {
    const c = document.getElementById(`vla-overlay-${cam}`);
    if (!c) continue;
    const base = S.el.canvases[cam];
    if (base && c.width !== base.width) { c.width = base.width; c.height = base.height; }
    heat(c, ov ? gridFor(ov, cam) : null);
    if (ov && cam === "front" && ov.path) path(c, ov.path);
  }
  cleared = !ov;
  if (ov) S.overlayPainted += 1;
}

function gridFor(ov, cam) {
  const words = (ov.word_maps || {})[cam];
  if (S.overlayWord != null && words && words[S.overlayWord]) return words[S.overlayWord];
  return ((ov.maps || {})[S.overlayMap] || {})[cam] || null;
}

const jet = (v) => [1.5 - Math.abs(4 * v - 3), 1.5 - Math.abs(4 * v - 2), 1.5 - Math.abs(4 * v - 1)]
  .map((x) => Math.round(255 * Math.max(0, Math.min(1, x))));

/** A (rows × cols) map, scaled to its maximum, as a smoothed jet heatmap whose alpha grows with the value. */
function heat(canvas, grid) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!grid || !grid.length || !grid[0].length) return;
  const rows = grid.length, cols = grid[0].length, max = Math.max(...grid.map((r) => Math.max(...r)));
  if (!(max > 0)) return;
  const img = new ImageData(cols, rows);
  grid.forEach((row, y) => row.forEach((x0, x) => {
    const v = Math.max(0, x0 / max), i = 4 * (y * cols + x);
    img.data.set([...jet(v), Math.round(255 * v)], i);
  }));
  const small = new OffscreenCanvas(cols, rows);
  small.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

/** The planned tool path: a line through the chunk's points (fractions of the image), a dot at its end. */
function path(canvas, points) {
  const pts = points.filter((p) => p && Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (pts.length < 2) return;
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  ctx.save();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = Math.max(1.5, W / 120);
  ctx.beginPath();
  pts.forEach(([u, v], i) => (i ? ctx.lineTo(u * W, v * H) : ctx.moveTo(u * W, v * H)));
  ctx.stroke();
  const [u, v] = pts[pts.length - 1];
  ctx.fillStyle = "#ff0";
  ctx.beginPath();
  ctx.arc(u * W, v * H, Math.max(2, W / 80), 0, 2 * Math.PI);
  ctx.fill();
  ctx.restore();
  S.pathPainted += 1;
}

/** The instruction's words as clickable spans (rebuilt only when the words change). */
function showWords(ov) {
  const E = S.el, words = ov ? ov.words || [] : [];
  E.words.hidden = !words.length;
  const key = words.join("\u0000");
  if (key === wordsKey) return;
  wordsKey = key;
  if (S.overlayWord != null && S.overlayWord >= words.length) S.overlayWord = null;
  E.words.replaceChildren(h("span", { class: "vla-words-label" }, "words:"), ...words.map((w, i) =>
    h("span", { id: `vla-word-${i}`, class: "vla-word", "data-index": i, title: "show this word's map",
                onclick: () => pickWord(i) }, w)));
  markWord();
}

function pickWord(i) {
  S.overlayWord = S.overlayWord === i ? null : i;
  markWord();
}

function markWord() {
  for (const s of S.el.words.querySelectorAll(".vla-word")) {
    s.classList.toggle("vla-word-on", Number(s.dataset.index) === S.overlayWord);
  }
}

/** The strip chart (10 Hz, from hud.js): uncertainty over the last 10 s, the threshold as a dashed red line. */
export function drawChart() {
  const E = S.el, c = E.chart;
  if (!c) return;
  const now = performance.now(), trace = S.uncertaintyTrace;
  while (trace.length && trace[0].t < now - CHART_MS) trace.shift();
  const ctx = c.getContext("2d"), W = c.width, H = c.height, pad = 4;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, W, H);
  const last = trace[trace.length - 1], threshold = last ? last.threshold : null;
  const top = Math.max(1e-6, threshold ?? 0, ...trace.map((p) => p.u)) * 1.15;
  const x = (t) => ((t - (now - CHART_MS)) / CHART_MS) * W, y = (u) => H - pad - (u / top) * (H - 2 * pad);
  if (threshold != null) {
    ctx.strokeStyle = "#e53935";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(0, y(threshold));
    ctx.lineTo(W, y(threshold));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#9f9";
  ctx.fillStyle = "#9f9";
  ctx.beginPath();
  trace.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.u)) : ctx.moveTo(x(p.t), y(p.u))));
  ctx.stroke();
  if (trace.length === 1) ctx.fillRect(x(last.t) - 1.5, y(last.u) - 1.5, 3, 3);
  S.uncertaintyPoints = trace.length;
  E.chartLabel.textContent = last ? `uncertainty ${last.u.toFixed(4)}   threshold ${threshold == null ? "none"
    : threshold.toFixed(4)}   (last 10 s)` : "uncertainty: no policy driving";
  E.overlayOn.disabled = !can("robot.control");
}
