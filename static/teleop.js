// VLA Dashboard teleop console: live cameras and commands over /ws/teleop (protocol: webapp/ws.py's docstring),
// recording and scene controls over /api/robot. Builds itself inside #vla-teleop (a gr.HTML in the Teleop tab).
// window.vlaTeleop exposes state and the measured latencies (tests and bench/bench_browser.py read them).
(() => {
  "use strict";
  const HZ = 30;
  // Movement keys: event.code (the physical key, whatever the layout) -> axis and direction.
  const MOVE_KEYS = {
    KeyW: ["vx", 1, "W", "forward"], KeyS: ["vx", -1, "S", "back"],
    KeyA: ["vy", 1, "A", "left"], KeyD: ["vy", -1, "D", "right"],
    KeyR: ["vz", 1, "R", "up"], KeyF: ["vz", -1, "F", "down"],
    KeyQ: ["yaw", 1, "Q", "yaw left"], KeyE: ["yaw", -1, "E", "yaw right"],
  };
  const ACTION_KEYS = {
    Space: ["Space", "gripper open/close", () => toggleGripper()],
    Enter: ["Enter", "start recording", () => record("start")],
    KeyY: ["Y", "save as success", () => record("save", true)],
    KeyN: ["N", "save as failure", () => record("save", false)],
    KeyX: ["X / Backspace", "discard take", () => record("discard")],
    Backspace: null, // same as X (listed once)
    KeyT: ["T", "re-record (same scene)", () => record("restart")],
    KeyC: ["C", "take / release control", () => toggleControl()],
    Escape: ["Esc", "E-STOP (click the button to release)", () => setEstop(true)],
  };
  const EXTRA_KEYS = [["Shift (hold)", "slow mode (¼ speed)"], ["1 … 9", "speed scale 11 % … 100 %"]];
  const AXES = ["vx", "vy", "vz", "yaw"];

  const S = {
    ws: null, clientId: null, lease: false, holder: null, seq: 0, sent: new Map(),
    keys: new Set(), pad: { vx: 0, vy: 0, vz: 0, yaw: 0 }, gamepad: null, padGripperWas: false,
    gripper: 0, speedLevel: 9, slow: false, status: {}, state: [], tick: -1,
    lastDrawnTick: -1, dropped: 0, drawn: 0, drawTimes: [], fps: 0, latencies: [], decoding: false, pending: null,
    episodes: Number(sessionStorage.getItem("vla.episodes") || 0), expectStop: false, wasRecording: false,
    message: "", el: {},
  };
  window.vlaTeleop = S;
  S.stats = () => ({ fps: S.fps, dropped: S.dropped, p50: pct(S.latencies, 50), p95: pct(S.latencies, 95),
                     n: S.latencies.length });

  function pct(values, p) {
    if (!values.length) return null;
    const s = [...values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  }
  const h = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
    }
    e.append(...kids);
    return e;
  };
  const button = (label, onclick, attrs = {}) =>
    h("button", { type: "button", ...attrs, onclick: (ev) => { ev.currentTarget.blur(); onclick(ev); } }, label);

  // ---- DOM -------------------------------------------------------------------------------------------------
  function build(root) {
    root.textContent = "";
    root.dataset.ready = "1";
    S.synced = false;
    const E = (S.el = {});
    E.operator = h("input", { id: "vla-operator", placeholder: "operator name", maxlength: 64,
                              value: localStorage.getItem("vla.operator") || "" });
    E.operator.addEventListener("change", () => localStorage.setItem("vla.operator", E.operator.value.trim()));
    E.control = button("Take control", toggleControl, { id: "vla-control" });
    E.lease = h("span", { id: "vla-lease", class: "vla-badge" }, "connecting…");
    E.estop = button("E-STOP", () => setEstop(!S.status.estop), { id: "vla-estop", class: "vla-estop" });

    E.task = h("select", { id: "vla-task", onchange: fillInstructions });
    E.colour = h("select", { id: "vla-colour", onchange: fillInstructions });
    E.instruction = h("select", { id: "vla-instruction" });
    E.custom = h("input", { id: "vla-custom", placeholder: "or free-text instruction", maxlength: 300 });
    E.seed = h("input", { id: "vla-seed", placeholder: "seed (blank: new)", type: "number", min: 0, class: "vla-narrow" });
    const reset = button("Reset scene", resetScene, { id: "vla-reset" });

    E.dataset = h("input", { id: "vla-dataset", value: localStorage.getItem("vla.dataset") || "teleop", maxlength: 64 });
    E.dataset.addEventListener("change", () => localStorage.setItem("vla.dataset", E.dataset.value.trim()));
    E.autostop = h("input", { id: "vla-autostop", type: "checkbox",
                              onchange: () => api("recording/auto-stop", { enabled: E.autostop.checked }) });
    const recButtons = [
      ["● Record", "start", "vla-rec-start"], ["✓ Save success", "save-ok", "vla-rec-success"],
      ["✗ Save failure", "save-fail", "vla-rec-failure"], ["Discard", "discard", "vla-rec-discard"],
      ["↻ Re-record", "restart", "vla-rec-restart"],
    ].map(([label, what, id]) => button(label, () => (what === "save-ok" ? record("save", true)
      : what === "save-fail" ? record("save", false) : record(what)), { id }));
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
    for (const [label, axis, dir] of [["↑ fwd", "vx", 1], ["↓ back", "vx", -1], ["← left", "vy", 1],
      ["→ right", "vy", -1], ["⤒ up", "vz", 1], ["⤓ down", "vz", -1], ["⟲ yaw", "yaw", 1], ["⟳ yaw", "yaw", -1]]) {
      const b = h("button", { type: "button", class: "vla-padbtn", "data-axis": axis, "data-dir": dir }, label);
      const hold = (v) => (ev) => { ev.preventDefault(); S.pad[axis] = v; };
      b.addEventListener("pointerdown", hold(dir));
      for (const t of ["pointerup", "pointerleave", "pointercancel"]) b.addEventListener(t, hold(0));
      pad.append(b);
    }
    pad.append(button("◉ gripper", toggleGripper, { class: "vla-padbtn", id: "vla-pad-gripper" }));

    const keymap = h("table", { id: "vla-keymap", class: "vla-keymap" });
    const rows = [...Object.values(MOVE_KEYS).map(([, , k, what]) => [k, what]),
                  ...Object.values(ACTION_KEYS).filter(Boolean).map(([k, what]) => [k, what]), ...EXTRA_KEYS];
    for (const [k, what] of rows) keymap.append(h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what)));

    root.append(
      h("div", { class: "vla-row" }, E.operator, E.control, E.lease, E.estop, E.success),
      h("div", { class: "vla-row" }, "Task ", E.task, E.colour, E.instruction, E.custom, E.seed, reset),
      h("div", { class: "vla-row" }, "Dataset ", E.dataset, ...recButtons,
        h("label", {}, E.autostop, " stop on success"), E.recinfo, E.counter),
      h("div", { class: "vla-main" },
        h("div", {}, E.cams, E.msg),
        h("div", { class: "vla-side" }, E.hud, h("div", { class: "vla-row" }, "Speed ", E.speed, E.speedLabel), pad,
          h("details", { open: true }, h("summary", {}, "Keymap (keys act when no text box has focus)"), keymap))),
    );
    loadTasks();
    render();
  }

  function ensureCanvas(name) {
    if (!S.el.canvases[name]) {
      const c = h("canvas", { id: `vla-cam-${name}`, class: "vla-cam", width: 224, height: 224 });
      S.el.cams.append(h("figure", {}, c, h("figcaption", {}, name)));
      S.el.canvases[name] = c;
    }
    return S.el.canvases[name];
  }

  // ---- REST ------------------------------------------------------------------------------------------------
  async function api(path, body, method = "POST") {
    try {
      const r = await fetch(`/api/robot/${path}`, { method, headers: { "Content-Type": "application/json" },
                                                    body: body === undefined ? undefined : JSON.stringify(body) });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
      return data;
    } catch (e) {
      say(`${path}: ${e.message}`, true);
      return null;
    }
  }
  let TASKS = [];
  async function loadTasks() {
    const r = await fetch("/api/robot/tasks").catch(() => null);
    if (!r || !r.ok) return;
    TASKS = await r.json();
    const E = S.el;
    E.task.replaceChildren(...TASKS.map((t) => h("option", { value: t.name }, t.name)));
    fillInstructions();
  }
  function fillInstructions() {
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
  async function resetScene() {
    const E = S.el, seed = E.seed.value === "" ? null : Number(E.seed.value);
    const st = await api("reset", { seed, task: E.task.value || null, colour: E.colour.value || null,
                                    instruction: E.custom.value.trim() || E.instruction.value || null });
    if (st) say(`scene reset (seed ${st.seed ?? "?"})`);
  }
  function operator() {
    if (!S.el.operator) return localStorage.getItem("vla.operator") || "";  // the socket can open before build()
    const name = S.el.operator.value.trim();
    if (name) localStorage.setItem("vla.operator", name);
    return name;
  }
  async function record(what, success) {
    const rec = S.status.recording || {};
    const who = { operator: operator() || "anonymous", dataset: S.el.dataset.value.trim() || "teleop" };
    if (what === "start") {
      if (!rec.active && (await api("recording/start", who))) say("recording…");
    } else if (what === "save") {
      S.expectStop = true;
      const r = await api("recording/save", { success });
      if (r) { countEpisode(); say(`saved episode ${r.episode_id} as ${success ? "success" : "failure"}`); }
    } else if (what === "discard") {
      S.expectStop = true;
      if (await api("recording/discard")) say("take discarded");
    } else if (what === "restart") {
      S.expectStop = true;
      if (await api("recording/restart", who)) say("re-recording from the same scene");
    }
  }
  function countEpisode() {
    S.episodes += 1;
    sessionStorage.setItem("vla.episodes", S.episodes);
  }
  function setEstop(engaged) {
    api("estop", { engaged }).then((st) => st && (S.status = st) && render());
  }
  function say(text, error = false) {
    S.message = text;
    if (S.el.msg) { S.el.msg.textContent = text; S.el.msg.classList.toggle("vla-error", error); }
  }

  // ---- WebSocket -------------------------------------------------------------------------------------------
  function send(obj) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(obj));
  }
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/teleop`);
    ws.binaryType = "arraybuffer";
    S.ws = ws;
    ws.onopen = () => send({ type: "hello", operator: operator() || "viewer", control: false });
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
  function toggleControl() {
    if (S.lease) return send({ type: "release" });
    const name = operator();
    if (!name) return say("enter your operator name first", true);
    send({ type: "hello", operator: name, control: true });
  }
  function toggleGripper() {
    S.gripper = S.gripper > 0.5 ? 0 : 1;
  }

  function onFrame(buf) {
    const n = new DataView(buf).getUint32(0);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    header.offset = 4 + n;
    header.buf = buf;
    S.status = header.status || {};
    S.state = header.state;
    S.tick = header.tick;
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
  function trackRecording() {
    const active = !!(S.status.recording || {}).active;
    if (S.wasRecording && !active && !S.expectStop) { countEpisode(); say("stopped on success: episode saved"); }
    if (!active) S.expectStop = false;
    S.wasRecording = active;
  }

  // ---- commands at 30 Hz -----------------------------------------------------------------------------------
  function axes() {
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
  function speed() {
    return Math.max(0.01, (S.speedLevel / 9) * (S.slow ? 0.25 : 1));
  }
  function tick() {
    if (!S.lease || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    const seq = ++S.seq;
    S.sent.set(seq, performance.now());
    if (S.sent.size > 300) S.sent.delete(S.sent.keys().next().value); // never answered (e.g. e-stop): forget
    send({ type: "cmd", seq, ...axes(), gripper: S.gripper, speed: Number(speed().toFixed(3)) });
  }

  // ---- keyboard --------------------------------------------------------------------------------------------
  function consoleActive(ev) {
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return false;
    const root = document.getElementById("vla-teleop");
    return !!(root && root.offsetParent !== null); // the Teleop tab is showing
  }
  function onKeyDown(ev) {
    S.slow = ev.shiftKey;
    if (!consoleActive(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const code = ev.code;
    if (MOVE_KEYS[code]) S.keys.add(code);
    else if (/^Digit[1-9]$/.test(code)) { S.speedLevel = Number(code.slice(5)); S.el.speed.value = S.speedLevel; }
    else if (ACTION_KEYS[code] !== undefined || code === "Backspace") {
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

  // ---- HUD -------------------------------------------------------------------------------------------------
  function render() {
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
    const fmt = (x) => (x == null ? "—" : `${x.toFixed(0)} ms`);
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
      `cmd→frame   last ${fmt(recent[recent.length - 1])}  p50 ${fmt(pct(recent, 50))}  p95 ${fmt(pct(recent, 95))}`,
      `source      ${st.source ?? "—"}   gripper cmd ${S.gripper}   gamepad ${S.gamepad ?? "none"}`,
      `instruction ${st.instruction ?? "—"}`,
      `state       ${state}`,
      `rejected    ${(st.counters || {}).rejected ?? 0}`,
    ].join("\n");
    E.hud.dataset.state = JSON.stringify(S.state || []);
  }

  // ---- start -----------------------------------------------------------------------------------------------
  function mountIfNeeded() { // Gradio may render (or re-render) the tab after this script runs
    const root = document.getElementById("vla-teleop");
    if (root && !root.dataset.ready) build(root);
  }
  window.addEventListener("keydown", onKeyDown);
  window.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", releaseAll);
  document.addEventListener("visibilitychange", () => document.hidden && releaseAll());
  setInterval(mountIfNeeded, 250);
  setInterval(tick, 1000 / HZ);
  setInterval(render, 100);
  connect();
})();
