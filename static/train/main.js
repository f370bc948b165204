// The Train tab (engineers and admins launch; managers read): launch a training job on a snapshot, follow the job
// list, and watch the selected job's curves and log live. Builds itself inside #vla-train (webapp/ui.py) over
// /api/training, /api/jobs, /api/snapshots, /api/datasets and /api/models. Polling runs only while the tab is
// shown: the job list every 2 s, the followed job every second until it has finished.
// Modules: state (window.vlaTrain), launch (the form), jobs (the list and its buttons), follow (curves and log),
// curves (the plotly charts, shared with the Models page).

import { h } from "../common/dom.js";
import { whenSignedIn } from "../common/identity.js";
import { mount, showing } from "../common/mount.js";
import { buildFollow, follow, pollFollowed, wakeIfRestarted } from "./follow.js";
import { buildJobs, loadJobs, renderJobs } from "./jobs.js";
import { buildLaunch, guardLaunch, loadChoices } from "./launch.js";
import { T } from "./state.js";

const TICK_MS = 1000;
let timer = null;
let ticks = 0;

function select(id) {
  follow(id);
  renderJobs();
  pollFollowed();
}

async function launched(job) {
  await loadJobs();
  select(job.id);
}

function build(root) {
  const E = (T.el = { root });
  E.msg = h("span", { id: "vla-train-msg", class: "vla-train-msg", role: "status" });
  root.append(buildLaunch(launched), h("div", { class: "vla-train-row" }, E.msg), buildJobs(select), buildFollow());
  whenSignedIn(guardLaunch);
  if (T.selected != null) follow(T.selected); // Gradio rendered the tab again: keep following the same job
}

/** One tick while the tab is shown; the next is scheduled when this one is done (polls never overlap). */
async function tick() {
  timer = null;
  if (!showing("vla-train")) return;
  ticks += 1;
  try {
    if (ticks % 2) {
      await loadJobs();
      wakeIfRestarted(T.jobs);
    }
    await pollFollowed();
  } finally {
    if (showing("vla-train")) timer = setTimeout(tick, TICK_MS);
  }
}

function shown() {
  loadChoices();
  if (timer === null) tick();
}

function hidden() {
  clearTimeout(timer);
  timer = null;
}

mount("vla-train", { build, shown, hidden });
T.api = { select, loadJobs, loadChoices }; // for tests, the Models page's job links and the browser's console
