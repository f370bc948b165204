"""Start the real dashboard (`run.py serve`) as a subprocess and open headless Debian Chromium pages on it.

Shared by tests/e2e and bench/bench_browser.py. Never downloads a browser: playwright drives /usr/bin/chromium.
Every server gets its users first (USERS, `run.py users add`); pages sign in through the sign-in page (sign_in),
REST calls go through a signed-in Client (session cookie + CSRF header), robot commands hold the lease (Lease).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
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


# The users every e2e server gets (`admin` by `run.py users add` before the start, then the others by admin's
# POST /api/users), all with PASSWORD: `admin` for the fixtures' own REST calls, `expert` records the scripted
# demos, the others are the tests' operators. A server started with users={} has none, so it creates `admin`
# itself and prints the one-time sign-in link.
PASSWORD = "e2e-password-1234"
USERS = {
    "admin": "admin",
    "expert": "operator",
    "viewer": "operator",
    "bench": "operator",
    **dict.fromkeys(("alice", "bob", "carol", "dave", "erin", "frank"), "operator"),
}


class Client:
    """A signed-in REST client (urllib with a cookie jar): the session cookie on every call, the CSRF token from
    the `vla_csrf` cookie on every state-changing one, as the browser's common/api.js sends them."""

    def __init__(self, url: str, name: str, password: str = PASSWORD) -> None:
        self.url, self.name = url, name
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.user = self.request("POST", "/api/auth/signin", {"name": name, "password": password})["user"]

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.cookies if c.name == name), "")

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        headers = {}
        data = None
        if method != "GET":
            data = json.dumps(body or {}).encode()
            headers = {"Content-Type": "application/json", "X-CSRF-Token": self.cookie("vla_csrf")}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with self._opener.open(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get(self, path: str):
        return self.request("GET", path, timeout=10)

    def post(self, path: str, body: dict | None = None):
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict):
        return self.request("PATCH", path, body)

    def open(self, path: str, timeout: float = 10):
        """The raw response (a video, a CSV) with this session's cookie."""
        return self._opener.open(self.url + path, timeout=timeout)


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, data_dir: Path, log: Path) -> None:
        self.url, self.proc, self.data_dir, self.log = url, proc, data_dir, log
        self._clients: dict[str, Client] = {}

    def client(self, name: str = "admin", password: str = PASSWORD) -> Client:
        """A REST client signed in as `name` (one per name, reused)."""
        if name not in self._clients:
            self._clients[name] = Client(self.url, name, password)
        return self._clients[name]

    def get(self, path: str):
        return self.client().get(path)

    def post(self, path: str, body: dict | None = None):
        return self.client().post(path, body)


def add_user_cli(env: dict, name: str, role: str, password: str = PASSWORD) -> None:
    """`run.py users add NAME --role ROLE --password-stdin` against the server's data dir (before it starts)."""
    subprocess.run(
        [sys.executable, "run.py", "users", "add", name, "--role", role, "--password-stdin"],
        cwd=ROOT,
        env=env,
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


def _answers(url: str) -> bool:
    """Whether the server answers at all (the sign-in page is open to everyone)."""
    try:
        with urllib.request.urlopen(url + "/signin", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def run_server(data_dir: Path, *, image_size: int = 96, timeout_s: float = 60.0, users: dict[str, str] = USERS):
    """`run.py serve` on a free port with a throwaway data dir; yields a Server once the sim loop runs and `users`
    exist (`admin` is added with `run.py users add` first, and it adds the rest). users={}: a first start."""
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
    if users:  # `admin` from the console before the start; the rest through the admin API (a second apiece less)
        add_user_cli(env, "admin", "admin")
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
            if _answers(server.url) and (not users or server.get("/api/robot/status")["running"]):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not start in {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.2)
        for name, role in users.items():
            if name != "admin":
                server.post("/api/users", {"name": name, "role": role, "password": PASSWORD})
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sign_in_link(server: Server, timeout_s: float = 30.0) -> str:
    """The one-time sign-in URL `run.py serve` prints on a first start (no users yet), read from its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"(http://\S+/signin/link\?token=\S+)", server.log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise TimeoutError(f"no sign-in link in the server log:\n{server.log.read_text()}")


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


def sign_in(page, url: str, name: str, password: str = PASSWORD) -> None:
    """Sign `page` in on the sign-in page, as a person does, and wait for the dashboard to name the user."""
    page.goto(url + "/signin?next=/")
    page.fill("#vla-signin-name", name)
    page.fill("#vla-signin-password", password)
    page.click("#vla-signin-submit")
    page.wait_for_selector(f'#vla-whoami[data-name="{name}"]', timeout=30_000)


def signed_in_page(browser, url: str, name: str, *, viewport=(1400, 1000)):
    """A new context + page signed in as `name`, on the dashboard."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    sign_in(page, url, name)
    return page


def open_console(browser, url: str, *, user: str = "viewer", viewport=(1400, 1000)):
    """A new context + page signed in as `user` on the dashboard, with the teleop console built and streaming."""
    page = signed_in_page(browser, url, user, viewport=viewport)
    page.wait_for_selector("#vla-teleop[data-ready] #vla-control", timeout=30_000)
    page.wait_for_function("window.vlaTeleop && window.vlaTeleop.tick > 0", timeout=30_000)
    return page


class Lease:
    """The control lease held by a signed-in REST client over /ws/teleop (the robot's recording and scene commands
    belong to the lease holder); frames are read and dropped on a thread while it is held."""

    def __init__(self, client: Client) -> None:
        from websockets.sync.client import connect

        ws_url = client.url.replace("http", "ws", 1) + "/ws/teleop"
        self.ws = connect(
            ws_url, additional_headers={"Cookie": f"vla_session={client.cookie('vla_session')}"}, max_size=2**24
        )
        self.ws.send(json.dumps({"type": "hello", "control": True}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = self.ws.recv(timeout=10)
            if isinstance(msg, str) and json.loads(msg).get("type") == "lease":
                if not json.loads(msg)["granted"]:
                    raise RuntimeError(f"{client.name} got no lease: {msg}")
                break
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            for _ in self.ws:
                pass
        except Exception:  # closed: the lease is released
            pass

    def close(self) -> None:
        self.ws.close()
        self._thread.join(5)


def record_episodes(server: Server, n: int, *, seconds: float = 1.0, operator: str = "expert", dataset: str = "teleop"):
    """Record `n` episodes through the real recording endpoints, signed in as `operator` and holding the lease,
    while the sim's scripted expert drives the arm (each `seconds` long, saved as successes); returns their ids.
    The command source is idle and the lease free again afterwards."""
    client = server.client(operator)
    lease = Lease(client)
    ids = []
    try:
        client.post("/api/robot/source", {"name": "expert"})
        try:
            for _ in range(n):
                client.post("/api/robot/reset", {})
                client.post("/api/robot/recording/start", {"dataset": dataset})
                time.sleep(seconds)
                ids.append(client.post("/api/robot/recording/save", {"success": True})["episode_id"])
        finally:
            client.post("/api/robot/source", {"name": "idle"})
    finally:
        lease.close()
    return ids


def import_model(server: Server, folder: Path, name: str, *, user: str = "admin") -> dict:
    """Register a save_pretrained `folder` on the server as the next version of `name`, as the Models page does:
    packed as a .tar.gz (its files at the archive's top) and sent as the body of POST /api/models/import."""
    import io
    import tarfile
    import urllib.parse

    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    client = server.client(user)
    req = urllib.request.Request(
        f"{server.url}/api/models/import?{urllib.parse.urlencode({'name': name})}",
        data=packed.getvalue(),
        method="POST",
        headers={"Content-Type": "application/gzip", "X-CSRF-Token": client.cookie("vla_csrf")},
    )
    with client._opener.open(req, timeout=60) as r:  # the session cookie from the client's jar
        return json.loads(r.read())
