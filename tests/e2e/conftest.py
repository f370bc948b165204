"""End-to-end fixtures: one real server (`run.py serve`, sim robot, throwaway data dir) and one headless Chromium
for the module; each test opens its own browser contexts."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from serve import CHROMIUM, chromium, run_server  # noqa: E402  (tests/e2e is on sys.path: no __init__.py)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("e2e") / "data", image_size=96) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup.sh` (installs the Debian chromium package)")
    with chromium() as b:
        yield b
