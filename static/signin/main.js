// The sign-in page (GET /signin serves the HTML shell with the name and password boxes, the button and an error
// line). POST /api/auth/signin as JSON; on success go to `next` (only a path on this server) or the dashboard; on
// 401 / 429 show the server's message (and when to try again).

import { api } from "../common/api.js";

const $ = (id) => document.getElementById(id);

/** Where to go once signed in: `next` when it is a path on this server ("/x", not "//evil.example"), else "/". */
export function nextPath(search = location.search) {
  const next = new URLSearchParams(search).get("next") || "/";
  if (!next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  const url = new URL(next, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
}

function showError(text) {
  const line = $("vla-signin-error");
  line.textContent = text;
  line.hidden = !text;
}

async function signIn(ev) {
  if (ev) ev.preventDefault();
  const name = $("vla-signin-name").value.trim(), password = $("vla-signin-password").value;
  if (!name || !password) return showError("enter your name and password");
  const submit = $("vla-signin-submit");
  submit.disabled = true;
  showError("");
  try {
    await api("POST", "auth/signin", { name, password });
    location.assign(nextPath());
  } catch (e) {
    const wait = e.status === 429 && e.retryAfter ? ` (try again in ${e.retryAfter} s)` : "";
    showError(`${e.message}${wait}`);
    $("vla-signin-password").select();
  } finally {
    submit.disabled = false;
  }
}

function start() {
  const form = $("vla-signin-submit").closest("form");
  if (form) form.addEventListener("submit", signIn);
  else $("vla-signin-submit").addEventListener("click", signIn);
  for (const id of ["vla-signin-name", "vla-signin-password"]) {
    $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !form) signIn(ev); });
  }
  $("vla-signin-name").focus();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
