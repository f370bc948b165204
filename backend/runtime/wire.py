"""What crosses between the web process and the robot runtime process: errors and camera frames.

Calls and their answers are pickled tuples over a multiprocessing Pipe (client.py, child.py). Errors are sent as
their class path, args and attributes, not pickled whole: an exception with its own __init__ (LeaseHeldError takes
an operator and a timeout) does not unpickle, and the routes map errors to status codes by class.

Frames go through a ring of slots in a shared memory file (FrameRing): the runtime writes each pickled Frame into
the next slot and sends only (seq, slot, size) down the pipe, so a frame's JPEGs are copied once, into the mapping,
and read once, out of it. Each slot is a seqlock: the writer zeroes the slot's sequence number, writes the data and
the length, then sets the sequence number; a reader that finds the number changed under it drops the frame (the
writer lapped the ring), it never hands on a torn one.
"""

from __future__ import annotations

import importlib
import mmap
import os
import struct
import tempfile
from pathlib import Path

_HEADER = struct.Struct("<QQ")  # (seq, length) at the start of each slot
SLOT_BYTES = 1 << 20  # a 224 px frame with overlays is ~60 KB; a bigger one goes down the pipe instead
SLOTS = 8


class RuntimeUnavailableError(ConnectionError):
    """The robot runtime process is not there (starting, restarting after a crash, stopped) or did not answer."""


# ---------------------------------------------------------------------------------------------------- errors
def encode_error(exc: BaseException) -> tuple[str, str, tuple, dict]:
    cls = type(exc)
    args = tuple(a if isinstance(a, str | int | float | bool | type(None)) else repr(a) for a in exc.args)
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | float | bool | type(None))}
    return cls.__module__, cls.__qualname__, args, attrs


def decode_error(module: str, qualname: str, args: tuple, attrs: dict) -> BaseException:
    """The same exception class with the same message and simple attributes; RuntimeError when the class is not
    an importable exception here."""
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(qualname)
        exc = cls.__new__(cls)
        exc.args = args
        for key, value in attrs.items():
            setattr(exc, key, value)
        return exc
    except Exception:
        return RuntimeError(f"{qualname}: {args[0] if args else ''}")


# ---------------------------------------------------------------------------------------------------- frames
class FrameRing:
    """`SLOTS` slots of `SLOT_BYTES` in a file under /dev/shm (RAM), mapped by both processes."""

    def __init__(self, path: Path, *, create: bool, slots: int = SLOTS, slot_bytes: int = SLOT_BYTES) -> None:
        self.path, self.slots, self.slot_bytes = Path(path), slots, slot_bytes
        size = slots * slot_bytes
        fd = os.open(self.path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.torn = 0  # frames a reader dropped because the writer lapped it

    @classmethod
    def create(cls) -> FrameRing:
        shm = Path("/dev/shm")
        fd, name = tempfile.mkstemp(prefix="vla-frames-", dir=shm if shm.is_dir() else None)
        os.close(fd)
        os.unlink(name)  # mkstemp only picked a free name: the ring creates the file itself (O_EXCL)
        return cls(Path(name), create=True)

    def capacity(self) -> int:
        return self.slot_bytes - _HEADER.size

    def write(self, seq: int, data: bytes) -> int | None:
        """Put `data` in slot seq % slots (seq >= 1); returns the slot, or None if it does not fit one."""
        if len(data) > self.capacity():
            return None
        slot = seq % self.slots
        base = slot * self.slot_bytes
        m = self._map
        m[base : base + _HEADER.size] = _HEADER.pack(0, 0)  # invalid while being written
        m[base + _HEADER.size : base + _HEADER.size + len(data)] = data
        m[base : base + _HEADER.size] = _HEADER.pack(seq, len(data))
        return slot

    def read(self, seq: int, slot: int) -> bytes | None:
        """The data of frame `seq`, or None if the slot holds another frame by now (counted in `torn`)."""
        base = slot * self.slot_bytes
        m = self._map
        found, length = _HEADER.unpack(m[base : base + _HEADER.size])
        if found == seq and 0 < length <= self.capacity():
            data = m[base + _HEADER.size : base + _HEADER.size + length]
            if _HEADER.unpack(m[base : base + _HEADER.size])[0] == seq:
                return data
        self.torn += 1
        return None

    def close(self, *, unlink: bool = False) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass
        if unlink:
            self.path.unlink(missing_ok=True)
