"""Test-only stand-in for torchvision: just what LeRobot's dataset loader calls (see tests/shims/README.md)."""

from . import io, transforms

__version__ = "0.0.0+shim"
_video_backend = "pyav"


def set_video_backend(backend: str) -> None:
    """Only PyAV exists here; torchvision's "video_reader"/"cuda" backends need a source build."""
    global _video_backend
    if backend != "pyav":
        raise ValueError(f"torchvision shim supports only the 'pyav' video backend, got {backend!r}")
    _video_backend = backend


def get_video_backend() -> str:
    return _video_backend


__all__ = ["io", "transforms", "set_video_backend", "get_video_backend"]
