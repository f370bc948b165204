// The console's WebSocket client for /ws/teleop (protocol: webapp/ws.py's docstring): the lease messages, and the
// binary frames (a JSON header, then one JPEG per camera) drawn onto one canvas per camera, newest first, with the
// policy's overlay (header.overlay, while a policy drives) over them.

import { h } from "../common/dom.js";
import { countEpisode } from "./controls.js";
import { render } from "./hud.js";
import { noteOverlay, overlayCanvas, paintOverlay } from "./overlay.js";
import { S, say } from "./state.js";

export function send(obj) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(obj));
}

export function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/teleop`);
  ws.binaryType = "arraybuffer";
  S.ws = ws;
  // The session cookie goes with the handshake: the server knows who this is (no name is sent).
  ws.onopen = () => send({ type: "hello", control: false });
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onText(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = () => {
    S.lease = false;
    say("connection lost; reconnecting…", true);
    setTimeout(connect, 1000);
  };
}

function onText(m) {
  if (m.type === "welcome") S.clientId = m.client_id;
  else if (m.type === "lease") {
    S.lease = m.granted;
    S.holder = m.holder;
    if (!m.granted && m.detail && m.detail !== "released") say(`no control: ${m.detail}`, true);
    if (m.granted) say("you control the robot");
    render();
  } else if (m.type === "error") say(`server: ${m.detail}`, true);
}

export function toggleControl() {
  send({ type: S.lease ? "release" : "acquire" });
}

export function ensureCanvas(name) {
  if (!S.el.canvases[name]) {
    const c = h("canvas", { id: `vla-cam-${name}`, class: "vla-cam", width: 224, height: 224 });
    // The policy's heatmap (overlay.js) lies over the image; clicks go through it to the camera's canvas.
    S.el.cams.append(h("figure", {}, h("div", { class: "vla-camwrap" }, c, overlayCanvas(name)),
                       h("figcaption", {}, name)));
    S.el.canvases[name] = c;
  }
  return S.el.canvases[name];
}

function onFrame(buf) { // [u32 header length][JSON header][JPEG per camera, lengths in header.cameras]
  const n = new DataView(buf).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  header.offset = 4 + n;
  header.buf = buf;
  S.status = header.status || {};
  S.state = header.state;
  S.tick = header.tick;
  noteOverlay(header.overlay); // every header: the uncertainty chart gets each prediction, drawn or not
  if (!S.el.cams) return; // the socket can open before Gradio has rendered the console's container
  if (S.decoding) S.pending = header; // draw only the newest; what is replaced here counts as dropped
  else draw(header);
}

async function draw(f) {
  S.decoding = true;
  try {
    let at = f.offset;
    for (const [name] of f.cameras) ensureCanvas(name); // in header order, whichever decodes first
    const jobs = f.cameras.map(([name, len]) => {
      const blob = new Blob([new Uint8Array(f.buf, at, len)], { type: "image/jpeg" });
      at += len;
      return createImageBitmap(blob).then((bmp) => {
        const c = ensureCanvas(name);
        if (c.width !== bmp.width) { c.width = bmp.width; c.height = bmp.height; }
        c.getContext("2d").drawImage(bmp, 0, 0);
        bmp.close();
      });
    });
    await Promise.all(jobs);
    paintOverlay(f);
    framePainted(f);
  } catch (e) {
    say(`frame: ${e.message}`, true);
  }
  S.decoding = false;
  if (S.pending) { const p = S.pending; S.pending = null; draw(p); }
}

function framePainted(f) {
  const now = performance.now();
  if (S.lastDrawnTick >= 0 && f.tick > S.lastDrawnTick + 1) S.dropped += f.tick - S.lastDrawnTick - 1;
  S.lastDrawnTick = f.tick;
  S.drawn += 1;
  S.drawTimes.push(now);
  while (S.drawTimes.length && S.drawTimes[0] < now - 1000) S.drawTimes.shift();
  S.fps = S.drawTimes.length;
  // Command-to-frame round trip: every command this frame reflects (seq <= last_command_seq) closes here.
  const applied = f.last_command_seq;
  if (applied != null) {
    for (const [seq, t] of S.sent) {
      if (seq > applied) break;
      S.latencies.push(now - t);
      S.sent.delete(seq);
    }
    if (S.latencies.length > 20000) S.latencies.splice(0, 10000);
  }
  trackRecording();
}

function trackRecording() { // a take that ends without Save/Discard from here was stopped by the task's success
  const active = !!(S.status.recording || {}).active;
  if (S.wasRecording && !active && !S.expectStop) { countEpisode(); say("stopped on success: episode saved"); }
  if (!active) S.expectStop = false;
  S.wasRecording = active;
}
