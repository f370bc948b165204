// Who is at the keyboard: one name for both tabs, typed into the Teleop console or the Label tab's prompt and
// remembered in localStorage across reloads. Recordings carry it as `operator`; labels and curation as `user`.

const KEY = "vla.operator";
const USER_NAME = /^[\p{L}\p{N}_ .@+-]{1,64}$/u; // what the API accepts (webapp/schemas.py OperatorName)
export const NAME_RULE = "a name is 1–64 letters, digits, spaces or . @ + - _";
const listeners = new Set();

export const currentUser = () => localStorage.getItem(KEY) || "";

/** Remember `name` (trimmed) and tell every listener; false, and nothing stored, when the API would refuse it. */
export function setUser(name) {
  const trimmed = String(name).trim();
  if (!USER_NAME.test(trimmed)) return false;
  if (trimmed !== currentUser()) {
    localStorage.setItem(KEY, trimmed);
    for (const fn of listeners) fn(trimmed);
  }
  return true;
}

/** `fn(name)` whenever the name changes, in this page or in another tab of the dashboard. */
export function onUserChange(fn) {
  listeners.add(fn);
}

window.addEventListener("storage", (ev) => {
  if (ev.key === KEY) for (const fn of listeners) fn(currentUser());
});
