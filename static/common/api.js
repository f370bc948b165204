// The dashboard's one REST client. Every call goes through api(); every failure rejects with an ApiError (the
// HTTP status and the server's `detail`), and the caller shows it in its own status line or banner.
// Signed-in calls: the session cookie goes along by itself; every state-changing call also carries the CSRF token
// the server set in the (script-readable) `vla_csrf` cookie, and a 401 (no or expired session) sends the page to
// the sign-in page, which comes back here afterwards.

export class ApiError extends Error {
  constructor(status, data, retryAfter = null) {
    super(detailText(data) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status; // 0: the server was not reached
    this.data = data; // the parsed JSON body, {} when there was none (409s carry `current_version`)
    this.retryAfter = retryAfter; // a 429's Retry-After header (seconds), else null
  }
}

/** The server's `detail` as one line: a string as it is, FastAPI's validation errors as "field: message; …". */
export function detailText(data) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return d ? JSON.stringify(d) : "";
}

/** A cookie's value, "" when there is none. */
export function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

/** Go to the sign-in page, which returns to this page (path, query and hash) once signed in. */
export function toSignIn() {
  const here = location.pathname + location.search + location.hash;
  location.assign(`/signin?next=${encodeURIComponent(here)}`);
}

/** `method /api/<path>` with an optional JSON body: the parsed JSON reply, or a rejection with an ApiError.
 * Every call but a GET sends JSON, {} when it has no body, and the CSRF token: the server refuses any other
 * state-changing request (415 / 403), so that a cross-site page or form cannot act on the dashboard
 * (webapp/security.py). */
export async function api(method, path, body) {
  const init = { method, headers: {} };
  const reading = method === "GET" || method === "HEAD";
  if (body === undefined && !reading) body = {};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!reading) init.headers["X-CSRF-Token"] = cookie("vla_csrf");
  let r;
  try {
    r = await fetch(`/api/${path}`, init);
  } catch (e) { // fetch itself rejects only when no answer came at all
    throw new ApiError(0, { detail: `the server did not answer (${e.message})` });
  }
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && !path.startsWith("auth/signin")) toSignIn(); // the session ended (expired, signed out)
  if (!r.ok) throw new ApiError(r.status, data, r.headers.get("Retry-After"));
  return data;
}

export const get = (path) => api("GET", path);
