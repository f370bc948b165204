// The player: the open episode's videos (one per camera, the first one is the clock), the frame counter, the
// scrubber and the timeline of segments and marks. Every move of the playhead goes through setFrame.

import { get } from "../common/api.js";
import { button, h } from "../common/dom.js";
import { onSegmentTextKey, renderAnnotation, renderMarks } from "./annotation.js";
import { renderList, flagChips } from "./browser.js";
import { buildCharts, clearCharts, drawCharts, movePlayhead } from "./charts.js";
import { clamp, colour, fmtTime } from "./format.js";
import { L, say } from "./state.js";

export function buildPlayer() {
  const E = L.el;
  E.title = h("div", { id: "vla-label-title", class: "vla-label-title" }, "Pick an episode from the list.");
  E.videos = h("div", { id: "vla-label-videos", class: "vla-label-videos" });
  E.play = button("▶ Play", togglePlay, { id: "vla-label-play" });
  E.frame = h("span", { id: "vla-label-frame", class: "vla-label-frame" }, "frame — / —");
  E.scrubber = h("input", { id: "vla-label-scrubber", type: "range", min: 0, max: 0, value: 0, step: 1,
                            oninput: () => seek(Number(E.scrubber.value)) });
  E.timeline = h("div", { id: "vla-label-timeline", class: "vla-label-timeline", onclick: seekFromTimeline });
  E.marks = h("span", { id: "vla-label-marks" });
  E.segmentText = h("input", { id: "vla-label-segment-text", placeholder: "segment text — Enter saves, Esc cancels",
                               hidden: true, onkeydown: onSegmentTextKey });
  return h("section", { class: "vla-label-player" }, E.title, E.videos,
    h("div", { class: "vla-label-row" }, button("|◀", () => seek(0), { title: "first frame (Home)" }),
      button("◀ 1", () => stepFrames(-1), { id: "vla-label-back", title: "←" }), E.play,
      button("1 ▶", () => stepFrames(1), { id: "vla-label-forward", title: "→" }), E.frame),
    E.scrubber, E.timeline, h("div", { class: "vla-label-row" }, E.marks, E.segmentText), ...buildCharts());
}

/** Load an episode with its signals and history into the player (the newest call wins). */
export async function openEpisode(id, { keepFrame = false } = {}) {
  const token = ++L.openToken;
  stopPlayback();
  try {
    const [ep, signals, history] = await Promise.all([get(`episodes/${id}`),
      get(`episodes/${id}/signals`).catch((e) => (say(`signals: ${e.message}`, true), null)),
      get(`episodes/${id}/history`).catch((e) => (say(`history: ${e.message}`, true), []))]);
    if (token !== L.openToken) return;
    const frame = keepFrame && L.ep && L.ep.id === id ? L.frame : 0;
    Object.assign(L, { ep, signals, history, frame: clamp(frame, 0, ep.length - 1),
                       marks: { start: null, end: null } });
    L.el.conflict.hidden = true;
    renderList();
    renderEpisode();
    const row = L.el.rows.querySelector(`tr[data-episode-id="${id}"]`);
    if (row) row.scrollIntoView({ block: "nearest" });
    await drawCharts();
  } catch (e) {
    say(`episode ${id}: ${e.message}`, true);
  }
}

export const reloadEpisode = () => (L.ep ? openEpisode(L.ep.id, { keepFrame: true }) : null);

export function closeEpisode() {
  stopPlayback();
  Object.assign(L, { ep: null, signals: null, history: [], frame: 0 });
  renderEpisode();
}

export function renderEpisode() {
  const E = L.el, ep = L.ep;
  if (!E.root) return;
  E.root.classList.toggle("vla-no-episode", !ep);
  L.chartsReady = false;
  E.videos.replaceChildren();
  L.videos = [];
  if (!ep) {
    E.title.textContent = "Pick an episode from the list.";
    return clearCharts();
  }
  E.title.replaceChildren(h("b", {}, `Episode ${ep.id}`), ` · ${ep.dataset} · ${ep.task} · ${ep.source} · `,
    `${ep.operator ?? "—"} · ${fmtTime(ep.created_at)} · ${ep.length} frames @ ${ep.fps} fps`,
    ...(ep.deleted_at ? [h("span", { class: "vla-label-chip vla-flag" }, "in the trash")] : []), ...flagChips(ep));
  for (const camera of ep.cameras) {
    const v = h("video", { id: `vla-label-video-${camera}`, class: "vla-label-video", preload: "auto", muted: true,
                           playsinline: true, src: ep.video_urls[camera] });
    v.muted = true; // the attribute alone does not allow play() without a user gesture
    E.videos.append(h("figure", {}, v, h("figcaption", {}, camera)));
    L.videos.push(v);
  }
  if (L.videos.length) {
    L.videos[0].addEventListener("ended", () => L.playing && pause(ep.length - 1));
    L.videos[0].addEventListener("loadedmetadata", () => !L.playing && seek(L.frame));
  }
  E.scrubber.max = ep.length - 1;
  renderAnnotation();
  setFrame(L.frame, true);
  renderMarks();
}

const timeOf = (frame) => (frame + 0.5) / L.ep.fps; // the middle of the frame: lands inside it

export function seek(frame) {
  if (!L.ep) return;
  if (L.playing) stopPlayback();
  const k = clamp(Math.round(frame), 0, L.ep.length - 1);
  for (const v of L.videos) if (v.readyState > 0) v.currentTime = timeOf(k);
  setFrame(k);
}

export const stepFrames = (n) => seek(L.frame + n);

function setFrame(k, force = false) {
  if (k === L.frame && !force) return;
  L.frame = k;
  const E = L.el, T = L.ep ? L.ep.length : 0;
  E.frame.textContent = L.ep ? `frame ${k} / ${T}  ·  ${(k / L.ep.fps).toFixed(2)} s` : "frame — / —";
  E.frame.dataset.frame = k;
  E.scrubber.value = k;
  renderTimeline();
  for (const div of Object.values(E.charts)) movePlayhead(div);
}

export function togglePlay() {
  if (L.playing) pause();
  else play();
}

function play() {
  if (!L.ep || !L.videos.length) return;
  if (L.frame >= L.ep.length - 1) seek(0);
  L.playing = true;
  L.el.play.textContent = "❚❚ Pause";
  for (const v of L.videos) v.play().catch(() => {}); // rejected only when paused again before it started
  requestAnimationFrame(followVideo);
}

function stopPlayback() {
  L.playing = false;
  for (const v of L.videos) v.pause();
  if (L.el.play) L.el.play.textContent = "▶ Play";
}

/** Stop, and settle every camera on the frame being shown (or on `atFrame`). */
export function pause(atFrame) {
  stopPlayback();
  seek(atFrame ?? frameOfVideo());
}

const frameOfVideo = () => clamp(Math.floor(L.videos[0].currentTime * L.ep.fps), 0, L.ep.length - 1);

function followVideo() { // while playing: the first camera is the clock, the others and the playhead follow it
  if (!L.playing || !L.ep || !L.videos.length) return;
  const t = L.videos[0].currentTime;
  for (const v of L.videos.slice(1)) if (Math.abs(v.currentTime - t) > 0.1) v.currentTime = t;
  setFrame(frameOfVideo());
  requestAnimationFrame(followVideo);
}

function seekFromTimeline(ev) {
  if (!L.ep || ev.target.closest(".vla-label-block")) return;
  const box = L.el.timeline.getBoundingClientRect();
  seek(Math.floor(((ev.clientX - box.left) / box.width) * L.ep.length));
}

export function renderTimeline() {
  const E = L.el, ep = L.ep;
  if (!ep) return E.timeline.replaceChildren();
  const T = ep.length, pos = (k) => `${(k / T) * 100}%`;
  const blocks = (ep.segments || []).map((s, i) => h("div", {
    class: "vla-label-block", title: `${s.text} (frames ${s.start}–${s.end})`, "data-segment": i,
    style: `left:${pos(s.start)};width:${pos(s.end - s.start + 1)};background:${colour(i)}`,
    onclick: () => seek(s.start) }, s.text));
  const marks = ["start", "end"].filter((m) => L.marks[m] != null).map((m) =>
    h("div", { class: `vla-label-mark vla-mark-${m}`, style: `left:${pos(L.marks[m] + (m === "end" ? 1 : 0))}` }));
  E.timeline.replaceChildren(...blocks, ...marks,
    h("div", { class: "vla-label-head", style: `left:${pos(L.frame + 0.5)}` }));
}
