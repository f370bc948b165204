// The dashboard's one REST client. Every call goes through api(); every failure rejects with an ApiError (the
// HTTP status and the server's `detail`), and the caller shows it in its own status line or banner.

export class ApiError extends Error {
  constructor(status, data) {
    super(detailText(data) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status; // 0: the server was not reached
    this.data = data; // the parsed JSON body, {} when there was none (409s carry `current_version`)
  }
}

/** The server's `detail` as one line: a string as it is, FastAPI's validation errors as "field: message; …". */
export function detailText(data) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return d ? JSON.stringify(d) : "";
}

/** `method /api/<path>` with an optional JSON body: the parsed JSON reply, or a rejection with an ApiError. */
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(`/api/${path}`, init);
  } catch (e) { // fetch itself rejects only when no answer came at all
    throw new ApiError(0, { detail: `the server did not answer (${e.message})` });
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (path) => api("GET", path);
