// The Label tab's side of the shared identity: every change is recorded under a name, so the tab asks for one
// (common/identity.js keeps it for both tabs).

import { button, h } from "../common/dom.js";
import { currentUser, NAME_RULE, onUserChange, setUser } from "../common/identity.js";
import { L, say } from "./state.js";

export function buildUserPrompt() {
  const E = L.el;
  E.user = h("b", { id: "vla-label-user" });
  E.userInput = h("input", { id: "vla-label-user-input", placeholder: "your name", maxlength: 64,
                             onkeydown: (ev) => ev.key === "Enter" && saveUser() });
  E.userDialog = h("div", { id: "vla-label-user-dialog", class: "vla-label-dialog", hidden: true },
    h("div", {}, h("p", {}, "Who is labeling? Your name is saved with every change you make."), E.userInput,
      button("Start labeling", saveUser, { id: "vla-label-user-save" })));
  const change = h("a", { href: "#", id: "vla-label-user-change",
                          onclick: (ev) => { ev.preventDefault(); showUserPrompt(); } }, "change");
  return h("span", {}, "Labeling as ", E.user, " (", change, ")");
}

/** The name to record a change under, or null after asking for one. */
export function requireUser() {
  const name = currentUser();
  if (name) return name;
  showUserPrompt();
  say("enter your name first: every change is recorded under it", true);
  return null;
}

export function showUserPrompt() {
  const E = L.el;
  E.userDialog.hidden = false;
  E.userInput.value = currentUser();
  E.userInput.focus();
}

function saveUser() {
  const E = L.el;
  if (!setUser(E.userInput.value)) return say(NAME_RULE, true);
  E.userDialog.hidden = true;
  E.userInput.blur();
  renderUser();
  say(`labeling as ${currentUser()}`);
}

export function renderUser() {
  if (L.el.user) L.el.user.textContent = currentUser() || "(nobody)";
}

onUserChange(renderUser); // named in the Teleop tab, or in another browser tab
