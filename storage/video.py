"""H.264 MP4 encode (on a worker thread, while recording) and decode, through PyAV.

Encoding settings: libx264, yuv420p (plays in every browser), ``veryfast`` preset at CRF 18, a keyframe every
second (random access for training loaders costs at most ``fps`` decoded frames), frame pts = frame index with
time base 1/fps. At 224x224 one frame costs ≈1 ms of one core, so two cameras at 30 Hz use a few percent of the
2-core machine and leave it to the sim.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from storage.errors import RecordingError


@dataclass(frozen=True)
class EncoderSettings:
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    preset: str = "veryfast"
    crf: int = 18
    gop_seconds: float = 1.0  # keyframe interval
    threads: int = 1  # x264 threads per camera; cameras already encode in parallel, one per thread
    max_buffer_seconds: float = 10.0  # frames queued before add_frame applies backpressure

    def codec_options(self, fps: int) -> dict[str, str]:
        gop = max(1, round(self.gop_seconds * fps))
        return {
            "preset": self.preset,
            "crf": str(self.crf),
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",  # keyframes exactly every gop frames: predictable seek cost
            "threads": str(self.threads),
        }


_STOP = object()


@dataclass
class _Stats:
    encoded: int = 0
    max_backlog: int = 0
    producer_wait_s: float = 0.0  # time add_frame spent blocked on a full queue
    encode_s: float = 0.0
    errors: list[BaseException] = field(default_factory=list)


class VideoEncoderThread:
    """One camera: a bounded queue of (H, W, 3) uint8 frames, encoded to ``path`` on its own thread.

    The MP4 is opened in the constructor (fails fast on a bad path) and finished by ``close()``. ``abort()``
    drops queued frames and stops without flushing (discard).
    """

    def __init__(self, path: Path, *, fps: int, height: int, width: int, settings: EncoderSettings) -> None:
        self.path = path
        self.fps = fps
        self.height = height
        self.width = width
        self.stats = _Stats()
        self._aborted = False
        self._closed = False
        maxsize = max(1, round(settings.max_buffer_seconds * fps))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._container = av.open(str(path), mode="w", format="mp4")
        try:
            stream = self._container.add_stream(settings.codec, rate=fps, options=settings.codec_options(fps))
            stream.width = width
            stream.height = height
            stream.pix_fmt = settings.pix_fmt
            stream.time_base = Fraction(1, fps)
            stream.codec_context.time_base = Fraction(1, fps)
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._thread = threading.Thread(target=self._run, name=f"video-encoder:{path.name}", daemon=True)
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        return self.stats.errors[0] if self.stats.errors else None

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def put(self, frame: np.ndarray) -> None:
        """Queue one frame (the caller hands over ownership). Blocks only while the queue is full."""
        self._raise_if_failed()
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            t0 = time.perf_counter()
            while True:  # backpressure, but wake up to notice a dead encoder instead of blocking forever
                self._raise_if_failed()
                try:
                    self._queue.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self.stats.producer_wait_s += time.perf_counter() - t0
        backlog = self._queue.qsize()
        if backlog > self.stats.max_backlog:
            self.stats.max_backlog = backlog

    def close(self) -> int:
        """Flush the encoder, finish the MP4 and return the number of frames encoded."""
        if not self._closed:
            self._closed = True
            self._put_stop()
            self._thread.join()
        self._raise_if_failed()
        return self.stats.encoded

    def abort(self) -> None:
        """Stop without flushing; the (partial) file is left for the caller to delete."""
        if self._closed:
            return
        self._closed = True
        self._aborted = True
        self._put_stop()
        self._thread.join()

    def _put_stop(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self.stats.errors:
            raise RecordingError(f"video encoder for {self.path.name} failed: {self.stats.errors[0]!r}")

    def _run(self) -> None:
        stream, container = self._stream, self._container
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if self._aborted or self.stats.errors:
                    continue  # drain so a producer never blocks on a dead encoder
                t0 = time.perf_counter()
                frame = av.VideoFrame.from_ndarray(item, format="rgb24")
                frame.pts = self.stats.encoded
                frame.time_base = stream.codec_context.time_base
                for packet in stream.encode(frame):  # rgb24 -> yuv420p happens inside encode()
                    container.mux(packet)
                self.stats.encoded += 1
                self.stats.encode_s += time.perf_counter() - t0
            if not self._aborted and not self.stats.errors:
                for packet in stream.encode(None):
                    container.mux(packet)
        except BaseException as exc:  # noqa: BLE001 - reported to the recording thread
            self.stats.errors.append(exc)
            while True:  # keep draining until the stop marker so producers never deadlock
                try:
                    if self._queue.get(timeout=0.5) is _STOP:
                        break
                except queue.Empty:
                    if self._closed:
                        break
        finally:
            try:
                container.close()
            except BaseException as exc:  # noqa: BLE001
                if not self._aborted:
                    self.stats.errors.append(exc)


def read_video(path: Path) -> np.ndarray:
    """Decode every frame of a video to a (T, H, W, 3) uint8 RGB array."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        return np.zeros((0, stream.height, stream.width, 3), dtype=np.uint8)
    return np.stack(frames)


def probe_video(path: Path) -> dict[str, Any]:
    """Cheap header facts (no decoding): frame count, size, codec, fps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "frames": stream.frames,
            "height": stream.height,
            "width": stream.width,
            "codec": stream.codec_context.name,
            "fps": float(stream.average_rate) if stream.average_rate else None,
        }
