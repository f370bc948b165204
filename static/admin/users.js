// The Users tab (admins: users.admin): every user with role, state and last sign-in; add a user (the generated
// password is shown once), disable / enable, reset a password, change a role. Builds itself inside #vla-users
// (a gr.HTML in webapp/ui.py) over /api/users; the server refuses all of it to anyone else.

import { api, get } from "../common/api.js";
import { button, cells, h, headRow, options } from "../common/dom.js";
import { can, whenSignedIn } from "../common/identity.js";
import { mount } from "../common/mount.js";

export const ROLES = ["operator", "engineer", "manager", "admin"];
const U = { el: {}, users: [] };
window.vlaUsers = U;

const when = (t) => (t ? new Date(t).toLocaleString() : "never");

function say(text, error = false) {
  U.el.msg.textContent = text;
  U.el.msg.classList.toggle("vla-error", error);
}

/** Show a new password once, with whom it is for (the server keeps only its hash). */
function showPassword(name, password) {
  U.el.password.hidden = !password;
  U.el.password.replaceChildren("Password for ", h("b", {}, name), ": ",
    h("code", { id: "vla-users-new-password" }, password || ""), " — shown once: pass it on now.");
}

async function act(what, call) {
  try {
    const r = await call();
    say(what);
    await load();
    return r;
  } catch (e) {
    say(`${what}: ${e.message}`, true);
    return null;
  }
}

async function addUser() {
  const E = U.el, name = E.name.value.trim();
  if (!name) return say("give the new user a name", true);
  const r = await act(`added ${E.role.value} ${name}`, () => api("POST", "users", { name, role: E.role.value }));
  if (r) { showPassword(r.user.name, r.password); E.name.value = ""; }
}

function row(u) {
  const path = `users/${encodeURIComponent(u.name)}`;
  const role = h("select", { class: "vla-users-role", onchange: () =>
    act(`${u.name} is now ${role.value}`, () => api("PATCH", path, { role: role.value })) }, ...options(ROLES));
  role.value = u.role;
  const toggle = u.active
    ? button("Disable", () => act(`${u.name} disabled`, () => api("POST", `${path}/disable`)),
      { class: "vla-users-disable" })
    : button("Enable", () => act(`${u.name} enabled`, () => api("POST", `${path}/enable`)),
      { class: "vla-users-enable" });
  const reset = button("Reset password", async () => {
    if (!confirm(`Give ${u.name} a new password? Their sessions end at once.`)) return;
    const r = await act(`new password for ${u.name}`, () => api("POST", `${path}/reset-password`));
    if (r) showPassword(u.name, r.password);
  }, { class: "vla-users-reset" });
  return h("tr", { "data-user": u.name, class: u.active ? "" : "vla-muted" },
    h("td", {}, u.name), h("td", {}, role),
    ...cells([u.active ? "active" : "disabled", when(u.last_sign_in_at), when(u.created_at)]),
    h("td", {}, toggle, " ", reset));
}

export async function load() {
  if (!can("users.admin")) return;
  try {
    U.users = (await get("users")).data;
  } catch (e) {
    return say(`users: ${e.message}`, true);
  }
  U.el.rows.replaceChildren(...U.users.map(row));
}

function build(root) {
  const E = (U.el = {});
  E.msg = h("span", { id: "vla-users-msg", class: "vla-admin-msg", role: "status" });
  E.name = h("input", { id: "vla-users-name", placeholder: "new user's name", maxlength: 64,
                        onkeydown: (ev) => ev.key === "Enter" && addUser() });
  E.role = h("select", { id: "vla-users-role" }, ...options(ROLES));
  E.password = h("div", { id: "vla-users-password", class: "vla-admin-secret", hidden: true });
  E.rows = h("tbody", { id: "vla-users-rows" });
  root.append(
    h("div", { class: "vla-admin-row" }, "Add ", E.name, " as ", E.role,
      button("Add user", addUser, { id: "vla-users-add" }), E.msg),
    E.password,
    h("table", { class: "vla-admin-table" },
      headRow(["name", "role", "state", "last sign-in", "created", ""]), E.rows));
  whenSignedIn(load);
}

mount("vla-users", { build, shown: load });
