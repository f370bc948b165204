// The Label tab's side of the signed-in identity: the header names the user, every change is recorded under the
// session's user by the server, and what the role may not change is disabled with the reason as its tooltip.

import { h } from "../common/dom.js";
import { can, reason, whenSignedIn } from "../common/identity.js";
import { L, say } from "./state.js";

// Which controls need which permission (backend/services/roles.py): CSS selectors inside #vla-label.
const NEEDS = {
  "episodes.edit": ["#vla-label-annotation :is(button, input, select, textarea)", "#vla-label-trim",
    "#vla-label-split"],
  "curation.write": ["#vla-label-bulk :is(button, input, select)", "#vla-label-merge", "#vla-label-snap-create"],
  "exports.write": ["#vla-label-export"],
};
const WHAT = { "episodes.edit": "edit labels", "curation.write": "curate datasets", "exports.write": "export" };

export function buildUserBadge() {
  L.el.user = h("b", { id: "vla-label-user" });
  return h("span", {}, "Labeling as ", L.el.user);
}

/** Whether the signed-in user may do `permission` now; if not, say why in the status line. */
export function allowed(permission) {
  if (can(permission)) return true;
  say(`not allowed: ${reason(WHAT[permission] || permission)}`, true);
  return false;
}

/** The name in the header, and the controls the role may not use disabled (the server refuses them anyway). */
export function renderUser() {
  const E = L.el;
  if (!E.root) return;
  whenSignedIn((u) => {
    if (E.user) E.user.textContent = `${u.name} (${u.role})`;
    for (const [permission, selectors] of Object.entries(NEEDS)) {
      if (can(permission)) continue;
      for (const el of E.root.querySelectorAll(selectors.join(", "))) {
        el.disabled = true;
        el.title = reason(WHAT[permission]);
      }
    }
  });
}
