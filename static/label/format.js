// How the Label tab writes values: names, times, changes in the history, segment colours.

const SEGMENT_COLOURS = ["#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#e53935", "#6d4c41", "#3949ab"];

export const colour = (i) => SEGMENT_COLOURS[i % SEGMENT_COLOURS.length];
export const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
export const pretty = (name) => String(name).replaceAll("_", " ");
export const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

/** A changed value in a few characters: paraphrases by their texts, segments by how many. */
export function short(value) {
  if (value == null) return "—";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => typeof v === "string")) return short(value.join(" | "));
    return `${value.length} segment${value.length === 1 ? "" : "s"}`;
  }
  const text = typeof value === "string" ? `"${value}"` : JSON.stringify(value);
  return text.length > 48 ? `${text.slice(0, 45)}…` : text;
}
