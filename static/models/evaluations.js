// Evaluation jobs of a model (POST /api/models/{id}/evaluate, GET …/evaluations): the Evaluate form (rollouts per
// colour on the test seeds, every sim colour), the table of finished evaluations (success with its Wilson interval
// per task/colour, grounding, uncertainty AUROC, the failed rollouts' videos one click away), and, in the
// comparison, both models' evaluations on the same seeds with the difference and its 95% interval. Grounding is told
// by three figures (issue 15): where the attention peak falls (on the cube), how much of its mass lies on the
// other cubes, and the occlusion ratio (greying the most-attended cell changes the action that many times more
// than greying a random one); with the wrong-object rate (rollouts that lifted or pushed another cube). The job itself is followed in the Train tab's job list.

import { api, get } from "../common/api.js";
import { button, h } from "../common/dom.js";
import { can, reason } from "../common/identity.js";
import { M, say, show, successText } from "./state.js";

const pct = (x) => (typeof x === "number" ? `${Math.round(100 * x)}%` : "—");
const times = (x) => (typeof x === "number" ? `${x.toFixed(1)}×` : "—");
const seedsText = (seeds) => Object.entries(seeds || {}).map(([g, [first, n]]) => `${g} ${first}…+${n}`).join(", ");

/** The Evaluate form and the model's evaluations (filled by loadEvaluations). */
export function evaluationBox(m) {
  const episodes = h("input", { id: "vla-models-eval-episodes", type: "number", min: 1, max: 1000, value: 10,
    title: "rollouts per colour, on the test seeds (100000 red, 101000 green, 102000 blue)" });
  const go = button("Evaluate", async () => {
    try {
      const job = await api("POST", `models/${m.id}/evaluate`, { episodes: Number(episodes.value) });
      say(`evaluation job ${job.id} queued (also in the Train tab's job list); its results appear here`);
      follow(job.id, m.id);
    } catch (e) {
      say(`evaluate: ${e.message}`, true);
    }
  }, { id: "vla-models-evaluate" });
  if (!can("training.write")) { go.disabled = true; go.title = reason("evaluate models"); }
  go.disabled ||= m.problems.length > 0;
  const list = h("div", { id: "vla-models-evaluations" }, "no evaluation yet");
  M.el.evaluations = list;
  return h("fieldset", { class: "vla-models-eval-box" }, h("legend", {}, "Evaluations (sim, fixed seeds)"),
    h("div", { class: "vla-models-row" }, "rollouts per colour ", episodes, go), list);
}

/** Poll the job every 2 s while its model stays open; once it ends, say how and refill the table. */
async function follow(jobId, modelId) {
  while (M.detail?.id === modelId) {
    let job;
    try {
      job = await get(`jobs/${jobId}`);
    } catch (e) {
      return say(`evaluation job ${jobId}: ${e.message}`, true);
    }
    if (["succeeded", "failed", "cancelled"].includes(job.status)) {
      if (job.status === "succeeded") say(`evaluation job ${jobId}: ${successText(job.result.overall)}`);
      else say(`evaluation job ${jobId} ${job.status}${job.error ? `: ${job.error.split("\n").slice(-2).join(" ")}` : ""}`, true);
      return loadEvaluations(modelId);
    }
    if (M.el.evaluations) M.el.evaluations.dataset.running = `${jobId}: ${job.message || job.status}`;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** Fill the open model's evaluation table. */
export async function loadEvaluations(id) {
  let data;
  try {
    ({ data } = await get(`models/${id}/evaluations`));
  } catch (e) {
    return say(`evaluations of model ${id}: ${e.message}`, true);
  }
  if (!M.el.evaluations || M.detail?.id !== id) return;
  if (!data.length) return M.el.evaluations.replaceChildren("no evaluation yet");
  const groups = [...new Set(data.flatMap((e) => Object.keys(e.per_group || {})))];
  const head = h("tr", {}, ...["job", "finished", "seeds", "success", ...groups, "grounding", "on other cubes",
    "occlusion", "wrong object", "AUROC (max)", "failures' videos"].map((t) => h("th", {}, t)));
  const player = h("div", { id: "vla-models-eval-player" });
  const rows = data.map((e) => h("tr", { "data-job-id": e.job_id },
    h("td", {}, String(e.job_id)), h("td", {}, (e.finished_at || "").replace("T", " ").slice(0, 19)),
    h("td", {}, seedsText(e.seeds)), h("td", { class: "vla-models-eval-success" }, successText(e.overall)),
    ...groups.map((g) => h("td", {}, successText(e.per_group?.[g]))),
    ...groundingCells(e.overall), h("td", {}, show(e.overall?.uncertainty_auroc_max)),
    h("td", { class: "vla-models-eval-videos" }, ...failureButtons(e, player))));
  M.el.evaluations.replaceChildren(h("table", { class: "vla-models-diff", id: "vla-models-eval-table" },
    h("thead", {}, head), h("tbody", {}, ...rows)), player);
}

/** Grounding, attention mass on the wrong cubes, occlusion ratio and wrong-object rate of one summary, as cells. */
function groundingCells(o) {
  return [
    h("td", { title: "frames whose attention peak falls on the instructed cube (front camera)" }, pct(o?.grounding_rate)),
    h("td", { title: "share of the attention on the other cubes (goal ≤ 10%)" }, pct(o?.attention_mass?.other_cubes)),
    h("td", { title: "median action change when the most-attended cell is greyed out, over a random cell's (goal ≥ 3×)" },
      times(o?.occlusion?.ratio)),
    h("td", { title: "rollouts that lifted or pushed a cube they were not told about (goal ≤ 5%)" },
      pct(o?.wrong_object_rate)),
  ];
}

/** One button per failed rollout with a video: a click plays it below the table (GET /api/jobs/{id}/videos/…). */
function failureButtons(e, player) {
  const videos = e.failure_videos || [];
  if (!videos.length) return [e.failure_videos ? "none failed" : "—"];
  return videos.map((v) => button(`${v.group} #${v.seed}`, () => {
    const src = `/api/jobs/${e.job_id}/videos/${encodeURIComponent(v.video)}`;
    player.replaceChildren(h("div", {}, `job ${e.job_id}, ${v.group}, seed ${v.seed} (failed) `,
      h("a", { href: src, download: v.video }, "download")),
      h("video", { src, controls: true, autoplay: true, class: "vla-models-eval-video" }));
  }, { class: "vla-models-eval-video-button", title: "play this failed rollout with the attention overlay" }));
}

/** The comparison's evaluations on the same seeds: A, B, A − B with Newcombe's 95% interval. */
export function evaluationPairs(pairs) {
  if (!pairs.length) {
    return h("div", { id: "vla-models-compare-evals" }, h("b", {}, "Evaluations: "),
      "none on the same seeds (evaluate both with the same settings to compare them directly)");
  }
  const rows = pairs.map((p) => {
    const ci = p.difference_95 ? ` [${pct(p.difference_95[0])}, ${pct(p.difference_95[1])}]` : "";
    const verdict = p.significant == null ? "—" : p.significant ? "significant" : "not significant";
    const look = (o) => `grounding ${pct(o?.grounding_rate)}, other cubes ${pct(o?.attention_mass?.other_cubes)}, ` +
      `occlusion ${times(o?.occlusion?.ratio)}, wrong object ${pct(o?.wrong_object_rate)}`;
    return h("tr", { "data-significant": String(p.significant) }, h("td", {}, seedsText(p.seeds)),
      h("td", {}, successText(p.a.overall)), h("td", {}, successText(p.b.overall)),
      h("td", {}, `${p.difference >= 0 ? "+" : ""}${pct(p.difference)}${ci}`), h("td", {}, verdict),
      h("td", { class: "vla-models-compare-look" }, `A: ${look(p.a.overall)}; B: ${look(p.b.overall)}`));
  });
  return h("div", { id: "vla-models-compare-evals" }, h("b", {}, "Evaluations on the same seeds"),
    h("table", { class: "vla-models-diff" }, h("thead", {}, h("tr", {}, ...["seeds", "A", "B", "A − B (95%)", "", "where they look"]
      .map((t) => h("th", {}, t)))), h("tbody", {}, ...rows)));
}
