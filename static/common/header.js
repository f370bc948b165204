// The dashboard's header line: who is signed in and as what, and Sign out. Also hides the tabs the role cannot
// use (Users needs users.admin, Audit audit.read); Gradio may render its tab bar again, so this is re-applied.

import { api } from "./api.js";
import { button, h } from "./dom.js";
import { can, whenSignedIn } from "./identity.js";
import { mount } from "./mount.js";

const TAB_PERMISSION = { Users: "users.admin", Audit: "audit.read" }; // tab label -> permission it needs

async function signOut() {
  try {
    await api("POST", "auth/signout");
  } finally {
    location.assign("/signin");
  }
}

function build(root) {
  const who = h("span", { id: "vla-whoami", class: "vla-whoami" }, "…");
  root.append(who, button("Sign out", signOut, { id: "vla-signout", class: "vla-signout" }));
  whenSignedIn((u) => {
    who.textContent = `Signed in as ${u.name} (${u.role})`;
    who.dataset.name = u.name;
    who.dataset.role = u.role;
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
