"""Start the real dashboard (`run.py serve`) as a subprocess and open headless Debian Chromium pages on it.

Shared by tests/e2e and bench/bench_browser.py. Never downloads a browser: playwright drives /usr/bin/chromium.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Pages in the background must keep their 30 Hz timers (several viewers in one browser).
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, data_dir: Path, log: Path) -> None:
        self.url, self.proc, self.data_dir, self.log = url, proc, data_dir, log

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None):
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


@contextmanager
def run_server(data_dir: Path, *, image_size: int = 96, timeout_s: float = 60.0):
    """`run.py serve` on a free port with a throwaway data dir; yields a Server once /api/robot/status answers."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "VLA_DATA_DIR": str(data_dir),
        "VLA_PORT": str(port),
        "VLA_HOST": "127.0.0.1",
        "VLA_IMAGE_SIZE": str(image_size),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }
    env.pop("VLA_DATABASE_URL", None)
    log = data_dir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "run.py", "serve", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, data_dir, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if server.get("/api/robot/status")["running"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not start in {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def chromium():
    """A headless Debian Chromium driven by playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_console(browser, url: str, *, operator: str | None = None, viewport=(1400, 1000)):
    """A new context + page on the dashboard with the teleop console built and streaming."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#vla-teleop[data-ready] #vla-operator", timeout=30_000)
    page.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
    if operator:
        page.fill("#vla-operator", operator)
        page.locator("#vla-operator").dispatch_event("change")
    return page


def record_episodes(server: Server, n: int, *, seconds: float = 1.0, operator: str = "expert", dataset: str = "teleop"):
    """Record `n` episodes through the real recording endpoints while the sim's scripted expert drives the arm
    (each `seconds` long, saved as successes); returns their ids. The command source is idle again afterwards."""
    server.post("/api/robot/source", {"name": "expert"})
    ids = []
    try:
        for _ in range(n):
            server.post("/api/robot/reset", {})
            server.post("/api/robot/recording/start", {"operator": operator, "dataset": dataset})
            time.sleep(seconds)
            ids.append(server.post("/api/robot/recording/save", {"success": True})["episode_id"])
    finally:
        server.post("/api/robot/source", {"name": "idle"})
    return ids
