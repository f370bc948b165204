// The Audit tab (audit.read): the audit log newest first, filtered by actor, action, object and date, a page at a
// time, and a CSV download of the same filters (/api/audit.csv). Builds itself inside #vla-audit (webapp/ui.py).

import { get } from "../common/api.js";
import { button, cells, debounced, h, headRow } from "../common/dom.js";
import { can, whenSignedIn } from "../common/identity.js";
import { mount } from "../common/mount.js";

const FILTERS = ["actor", "action", "object_type", "object_id"]; // free-text query parameters
const A = { el: {}, offset: 0, limit: 50, rows: [], count: 0 };
window.vlaAudit = A;

/** The filters as a query string (dates as the start of `since`'s day and the end of `until`'s). */
function query(paged) {
  const E = A.el, q = new URLSearchParams();
  for (const k of FILTERS) if (E[k].value.trim()) q.set(k, E[k].value.trim());
  if (E.since.value) q.set("since", new Date(`${E.since.value}T00:00:00`).toISOString());
  if (E.until.value) q.set("until", new Date(`${E.until.value}T23:59:59.999`).toISOString());
  if (paged) { q.set("offset", A.offset); q.set("limit", A.limit); }
  return q.toString();
}

export async function load() {
  if (!can("audit.read")) return;
  const E = A.el;
  E.csv.href = `/api/audit.csv?${query(false)}`;
  try {
    const r = await get(`audit?${query(true)}`);
    [A.rows, A.count] = [r.data, r.count];
    E.msg.textContent = "";
  } catch (e) {
    E.msg.textContent = `audit: ${e.message}`;
    return;
  }
  E.rows.replaceChildren(...A.rows.map((a) => h("tr", { "data-audit-id": a.id },
    ...cells([new Date(a.at).toLocaleString(), a.actor ?? "—", a.action,
      [a.object_type, a.object_id].filter(Boolean).join(" ") || "—", a.address ?? "—",
      a.detail ? JSON.stringify(a.detail) : ""]))));
  const last = Math.min(A.offset + A.rows.length, A.count);
  E.page.textContent = A.count ? `${A.offset + 1}–${last} of ${A.count}` : "no entries";
  E.page.dataset.count = A.count;
  E.prev.disabled = A.offset === 0;
  E.next.disabled = last >= A.count;
}

function turn(delta) {
  A.offset = Math.max(0, A.offset + delta * A.limit);
  load();
}

function build(root) {
  const E = (A.el = {});
  const refilter = debounced(() => { A.offset = 0; load(); });
  for (const k of FILTERS) {
    E[k] = h("input", { id: `vla-audit-${k}`, placeholder: k.replace("_", " "), class: "vla-narrow",
                        oninput: refilter });
  }
  E.since = h("input", { id: "vla-audit-since", type: "date", onchange: refilter });
  E.until = h("input", { id: "vla-audit-until", type: "date", onchange: refilter });
  E.csv = h("a", { id: "vla-audit-csv", href: "/api/audit.csv", download: "audit.csv" }, "Download CSV");
  E.prev = button("‹ newer", () => turn(-1), { id: "vla-audit-prev" });
  E.next = button("older ›", () => turn(1), { id: "vla-audit-next" });
  E.page = h("span", { id: "vla-audit-page" });
  E.msg = h("span", { id: "vla-audit-msg", class: "vla-admin-msg vla-error", role: "status" });
  E.rows = h("tbody", { id: "vla-audit-rows" });
  root.append(
    h("div", { class: "vla-admin-row" }, ...FILTERS.map((k) => E[k]), "from ", E.since, " to ", E.until,
      button("Refresh", load, { id: "vla-audit-refresh" }), E.csv),
    h("div", { class: "vla-admin-row" }, E.prev, E.page, E.next, E.msg),
    h("table", { class: "vla-admin-table" },
      headRow(["when", "who", "action", "object", "from", "detail"]), E.rows));
  whenSignedIn(load);
}

mount("vla-audit", { build, shown: load });
