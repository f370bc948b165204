"""Shared test set-up: headless MuJoCo before anything imports it; no hub access."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
