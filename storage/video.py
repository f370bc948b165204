"""The one H.264 MP4 writer and the one decoder of the project, through PyAV.

Writing: ``VideoWriter`` takes (H, W, 3) uint8 RGB frames one at a time and stores frame k at pts k with time
base 1/fps; ``VideoEncoderThread`` runs one on a worker thread behind a bounded queue (the recorder, one per
camera); ``write_video`` encodes an iterable (the exporter's re-encode fallback). ``EncoderSettings`` holds the
codec options: libx264, yuv420p (plays in every browser), ``veryfast`` at CRF 18 and a keyframe every second by
default (random access for training loaders costs at most ``fps`` decoded frames). At 224x224 one frame costs
≈1 ms of one core, so two cameras at 30 Hz use a few percent of the 2-core machine and leave it to the sim.

Reading: ``iter_frames`` / ``read_video`` (all frames, optionally resized), ``decode_at`` (frames nearest to given
timestamps, within a tolerance), ``first_frame`` / ``thumbnail_jpeg``, and ``probe_video`` for header facts.
Unreadable files raise ``VideoError``; callers turn it into their own error. Lossless joining of finished files
(a packet remux, no decoding) lives in ``storage.lerobot_v3.mp4``.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from storage.errors import RecordingError


class VideoError(Exception):
    """A video that cannot be opened, demuxed or decoded, or lacks frames; callers turn it into their own error."""


# ----------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class EncoderSettings:
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    preset: str = "veryfast"
    crf: int = 18
    gop_seconds: float = 1.0  # keyframe interval
    threads: int = 1  # x264 threads per file (0: x264 picks); recorder cameras already encode in parallel
    max_buffer_seconds: float = 10.0  # frames VideoEncoderThread queues before put() applies backpressure
    faststart: bool = False  # moov atom first (a second pass at close), for files served over HTTP

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


class VideoWriter:
    """An MP4 being written: ``write`` (H, W, 3) uint8 RGB frames, then ``close`` (or ``abort`` to drop it).

    The file is opened in the constructor, so a bad path or codec fails before the first frame.
    """

    def __init__(
        self, path: Path | str, *, fps: int, height: int, width: int, settings: EncoderSettings | None = None
    ) -> None:
        settings = settings or EncoderSettings()
        self.path = Path(path)
        self.frames = 0
        options = {"movflags": "faststart"} if settings.faststart else {}
        self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
        try:
            stream = self._container.add_stream(settings.codec, rate=fps, options=settings.codec_options(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, settings.pix_fmt
            stream.time_base = Fraction(1, fps)
            stream.codec_context.time_base = Fraction(1, fps)
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._open = True

    def write(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at pts = number of frames written so far."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self._stream.codec_context.time_base
        for packet in self._stream.encode(frame):  # rgb24 -> yuv420p happens inside encode()
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> int:
        """Flush the encoder, finish the file and return the number of frames written."""
        if self._open:
            self._open = False
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            finally:
                self._container.close()
        return self.frames

    def abort(self) -> None:
        """Stop without flushing; the (partial) file is left for the caller to delete."""
        if self._open:
            self._open = False
            try:
                self._container.close()
            except Exception:  # noqa: BLE001, S110 - the file is being thrown away
                pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    frames: Iterable[np.ndarray], path: Path | str, *, fps: int, height: int, width: int, settings: EncoderSettings
) -> int:
    """Encode (H, W, 3) uint8 RGB frames into one MP4, frame k at pts k / fps; returns the frame count."""
    with VideoWriter(path, fps=fps, height=height, width=width, settings=settings) as writer:
        for image in frames:
            writer.write(image)
    return writer.frames


_STOP = object()


@dataclass
class _Stats:
    encoded: int = 0
    max_backlog: int = 0
    producer_wait_s: float = 0.0  # time put() spent blocked on a full queue
    encode_s: float = 0.0
    errors: list[BaseException] = field(default_factory=list)


class VideoEncoderThread:
    """One camera: a bounded queue of (H, W, 3) uint8 frames, written by a ``VideoWriter`` on its own thread.

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
        self._writer = VideoWriter(path, fps=fps, height=height, width=width, settings=settings)
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
        writer = self._writer
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if self._aborted or self.stats.errors:
                    continue  # drain so a producer never blocks on a dead encoder
                t0 = time.perf_counter()
                writer.write(item)
                self.stats.encoded += 1
                self.stats.encode_s += time.perf_counter() - t0
            if self._aborted:
                writer.abort()
            else:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the recording thread
            self.stats.errors.append(exc)
            writer.abort()
            while True:  # keep draining until the stop marker so producers never deadlock
                try:
                    if self._queue.get(timeout=0.5) is _STOP:
                        break
                except queue.Empty:
                    if self._closed:
                        break


# ----------------------------------------------------------------------------------------------- reading
def _resized(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 at size (height, width): PIL's area average (BOX) when shrinking, else bilinear.

    BOX averages every source pixel, as a camera sensor would at the lower resolution, and matches what the sim
    renders at that size (MuJoCo multisamples), so training and closed-loop frames look alike.
    """
    height, width = size
    if image.size != (width, height):
        shrinking = image.size[0] >= width and image.size[1] >= height
        image = image.resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    return np.asarray(image)


def iter_frames(path: Path | str, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Every frame in presentation order as (H, W, 3) uint8 RGB, resized to ``size`` (height, width) if given."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: same frames, decoded on both cores
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24") if size is None else _resized(frame.to_image(), size)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: {e}") from e


def read_video(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode every frame to a (T, H, W, 3) uint8 RGB array, resized to ``size`` (height, width) if given."""
    frames = list(iter_frames(path, size))
    if frames:
        return np.stack(frames)
    if size is None:
        facts = probe_video(path)
        size = (facts["height"], facts["width"])
    return np.zeros((0, *size, 3), dtype=np.uint8)


def first_frame(path: Path | str) -> np.ndarray:
    """The first frame as (H, W, 3) uint8 RGB (decodes only up to it: no frame threads reading ahead)."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
            if frame is None:
                raise VideoError(f"{path}: no frames")
            return frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise VideoError(f"{path}: {e}") from e


def thumbnail_jpeg(path: Path | str, width: int, *, quality: int = 80) -> bytes:
    """The first frame as a JPEG at most ``width`` pixels wide (aspect kept, never enlarged)."""
    image = Image.fromarray(first_frame(path))
    image.thumbnail((width, width * 4))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_at(path: Path | str, times: Sequence[float], tolerance_s: float) -> np.ndarray:
    """Frames nearest to each time (seconds) -> (N, H, W, 3) uint8; VideoError if one is further than tolerance.

    Seeks to the keyframe at or before min(times) and decodes forward to max(times), as LeRobot's decoders do.
    """
    t = np.asarray(times, dtype=np.float64)
    lo, hi = float(t.min()), float(t.max())
    kept_pts: list[float] = []
    kept: list[np.ndarray] = []
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            s = c.streams.video[0]
            c.seek(max(int(lo / s.time_base), 0), backward=True, any_frame=False, stream=s)
            for f in c.decode(s):
                if f.pts is None:
                    continue
                ts = float(f.pts * f.time_base)
                if ts >= lo - tolerance_s:
                    kept_pts.append(ts)
                    kept.append(f.to_ndarray(format="rgb24"))
                if ts >= hi + tolerance_s:
                    break
    except av.FFmpegError as e:
        raise VideoError(f"{path}: {e}") from e
    if not kept:
        raise VideoError(f"{path}: no frame at or after {lo:.4f} s")
    loaded = np.asarray(kept_pts)
    nearest = np.abs(t[:, None] - loaded[None, :]).argmin(axis=1)
    dist = np.abs(loaded[nearest] - t)
    if (dist > tolerance_s).any():
        bad = int(np.argmax(dist > tolerance_s))
        raise VideoError(
            f"{path}: no frame within {tolerance_s:.4g} s of {t[bad]:.4f} s (nearest {loaded[nearest[bad]]:.4f} s); "
            f"the video has fewer frames than the episode needs"
        )
    return np.stack([kept[i] for i in nearest])


def probe_video(path: Path | str) -> dict[str, Any]:
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


def can_decode(codec: str) -> bool:
    """Whether this PyAV build has a decoder for ``codec`` (e.g. "h264", "av1")."""
    try:
        av.codec.Codec(codec, "r")
    except Exception:  # noqa: BLE001 - PyAV raises several kinds for unknown codecs
        return False
    return True
