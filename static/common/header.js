// The dashboard's header line: who is signed in and as what, and Sign out. Also hides the tabs the role cannot
// use (Train and Models need training.read, Users users.admin, Audit audit.read); Gradio may render its tab bar again, so this is re-applied.

import { api } from "./api.js";
import { button, h } from "./dom.js";
import { can, whenSignedIn } from "./identity.js";
import { mount } from "./mount.js";

// tab label -> permission it needs (Train and Models: training.read, so operators do not see them)
const TAB_PERMISSION = { Train: "training.read", Models: "training.read", Metrics: "metrics.read", Users: "users.admin",
                         Audit: "audit.read" };

async function signOut() {
  try {
    await api("POST", "auth/signout");
  } finally {
    location.assign("/signin");
  }
}

/** The first-start admin signed in by the one-time link has no password yet: ask for one (twice) and set it. */
async function setFirstPassword(buttonEl) {
  const first = window.prompt("Choose a password (you will sign in with it from now on):");
  if (!first) return;
  if (window.prompt("The same password again:") !== first) {
    window.alert("The two passwords differ; nothing was changed.");
    return;
  }
  try {
    await api("POST", "auth/password", { new: first }); // the server sets a fresh session and CSRF cookie
    buttonEl.remove();
    window.alert("Password set.");
  } catch (e) {
    window.alert(`The password was not set: ${e.message}`);
  }
}

function build(root) {
  const who = h("span", { id: "vla-whoami", class: "vla-whoami" }, "…");
  root.append(who, button("Sign out", signOut, { id: "vla-signout", class: "vla-signout" }));
  whenSignedIn((u) => {
    who.textContent = `Signed in as ${u.name} (${u.role})`;
    who.dataset.name = u.name;
    who.dataset.role = u.role;
    if (u.has_password === false) {
      const set = button("Set a password", () => setFirstPassword(set), { id: "vla-set-password" });
      set.title = "you signed in with the one-time link; without a password you cannot sign in again";
      root.insertBefore(set, who.nextSibling);
    }
  });
}

/** Hide each tab button the user may not use (all of them until the user is known). */
function hideTabs() {
  for (const tab of document.querySelectorAll('button[role="tab"]')) {
    const needs = TAB_PERMISSION[tab.textContent.trim()];
    if (needs) tab.style.display = can(needs) ? "" : "none";
  }
}

mount("vla-header", { build });
setInterval(hideTabs, 250);
