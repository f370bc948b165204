// The Label tab's hotkeys and their cheat sheet (?). Keys act when the tab is showing, no text box has the focus
// and the name prompt is closed.

import { h, isTyping } from "../common/dom.js";
import { showing } from "../common/mount.js";
import { markEnd, markStart, setReason, setVerdict, undo } from "./annotation.js";
import { stepEpisode, toggleSelected } from "./browser.js";
import { seek, stepFrames, togglePlay } from "./player.js";
import { L } from "./state.js";

const HOTKEYS = [
  ["Space", "play / pause"], ["← / →", "one frame back / forward"], ["Shift + ← / →", "10 frames back / fwd"],
  ["Home / End", "first / last frame"], ["S", "label success"], ["F", "label failure"],
  ["1 … 9", "failure reason (the number before it in the reason list)"], ["[", "segment start at the playhead"],
  ["]", "segment end at the playhead, then type its text (Enter saves, Esc cancels)"],
  ["Ctrl + Z", "undo the last change"], ["J / K", "next / previous episode in the list"],
  ["X", "select / unselect the episode for bulk edits"], ["?", "show / hide this sheet"],
];

export function buildHelp() {
  return (L.el.help = h("div", { id: "vla-label-help", class: "vla-label-help", hidden: true },
    h("table", {}, ...HOTKEYS.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what)))),
    h("p", {}, "Keys act when no text box has focus.")));
}

export function toggleHelp() {
  L.el.help.hidden = !L.el.help.hidden;
}

function onKeyDown(ev) {
  if (!showing("vla-label") || isTyping(ev.target)) return;
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const reasons = L.vocab.failure_reasons;
  if (ev.repeat && !["ArrowLeft", "ArrowRight"].includes(key)) return; // a held key steps frames, nothing else
  if (ev.ctrlKey || ev.metaKey) {
    if (key !== "z" || ev.shiftKey || ev.altKey) return;
    undo();
  } else if (ev.altKey) {
    return;
  } else if (key === " ") togglePlay();
  else if (key === "ArrowLeft" || key === "ArrowRight") {
    stepFrames((key === "ArrowLeft" ? -1 : 1) * (ev.shiftKey ? 10 : 1));
  }
  else if (key === "Home") seek(0);
  else if (key === "End") seek(L.ep ? L.ep.length - 1 : 0);
  else if (key === "s") setVerdict(true);
  else if (key === "f") setVerdict(false);
  else if (/^[1-9]$/.test(key) && Number(key) <= reasons.length) setReason(reasons[Number(key) - 1]);
  else if (key === "[") markStart();
  else if (key === "]") markEnd();
  else if (key === "j") stepEpisode(1);
  else if (key === "k") stepEpisode(-1);
  else if (key === "x") L.ep && toggleSelected(L.ep.id, !L.selected.has(L.ep.id));
  else if (key === "?") toggleHelp();
  else if (key === "Escape") L.el.help.hidden = true;
  else return;
  ev.preventDefault();
}

export const listen = () => window.addEventListener("keydown", onKeyDown);
