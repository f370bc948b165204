// Who is signed in: the session's user from GET /api/auth/me ({name, role, permissions}), asked once per page.
// The consoles show the name and hide or disable what the role may not do; the server decides regardless (it
// takes the identity from the session, never from a request body). Permission names: backend/services/roles.py.

import { get } from "./api.js";

let current = null; // {name, role, permissions: Set} once known
const waiting = [];

/** The signed-in user, or null before /api/auth/me has answered. */
export const me = () => current;

/** Whether the signed-in user's role has `permission` (false while unknown: buttons start disabled). */
export const can = (permission) => !!current && current.permissions.has(permission);

/** `fn(user)` once the user is known (at once when it already is). */
export function whenSignedIn(fn) {
  if (current) fn(current);
  else waiting.push(fn);
}

/** Why the role may not do something, for a disabled control's tooltip. */
export function reason(what) {
  if (!current) return "checking who is signed in…";
  const why = { manager: "managers read; they cannot " };
  return `${why[current.role] || `a ${current.role} cannot `}${what}`;
}

get("auth/me").then((u) => { // a 401 has already sent the page to /signin (common/api.js)
  current = { ...u, permissions: new Set(u.permissions || []) };
  for (const fn of waiting.splice(0)) fn(current);
}).catch(() => {});
