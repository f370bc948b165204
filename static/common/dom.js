// DOM helpers shared by the consoles: the markup is built in JS, one element per call.

/** An element: `on…` attributes become listeners, `true` a bare attribute, false/null none; null children skipped. */
export function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) { if (v) e.addEventListener(k.slice(2), v); }
    else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...kids.filter((k) => k != null));
  return e;
}

/** A button that gives the focus back after a click, so the consoles' hotkeys keep working. */
export const button = (label, onclick, attrs = {}) =>
  h("button", { type: "button", ...attrs, onclick: (ev) => { ev.currentTarget.blur(); onclick(ev); } }, label);

/** <option>s for `values`, shown as `labels[value]` where given. */
export const options = (values, labels = {}) => values.map((v) => h("option", { value: v }, labels[v] ?? v));

/** New options for a <select>, keeping the choice when it is still offered. */
export function refill(select, opts) {
  const was = select.value;
  select.replaceChildren(...opts);
  if ([...select.options].some((o) => o.value === was)) select.value = was;
}

export const cells = (values) => values.map((v) => h("td", {}, String(v)));
export const headRow = (titles) => h("thead", {}, h("tr", {}, ...titles.map((t) => h("th", {}, t))));

/** `fn` once typing has paused for `ms`. */
export function debounced(fn, ms = 300) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

/** Whether a key press belongs to a text box (then the consoles' hotkeys leave it alone). */
export function isTyping(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName)) return true;
  return target.tagName === "INPUT" && !["range", "checkbox", "radio", "button"].includes(target.type);
}
