"""MP4 helpers for LeRobot folders over PyAV: probe (demux only), the video ``info`` block, lossless concatenation.

Concatenation keeps every H.264 packet as it is and shifts its pts/dts by the episode's start in the output
(cumulative frames / fps), like LeRobot's own concatenate_video_files (ffmpeg concat demuxer + stream copy). It
needs every input to share codec, size, pixel format, time base and codec extradata (SPS/PPS), and each input
to present exactly frames 0..n-1 at k/fps; otherwise the caller re-encodes with storage.video, the project's one
encoder and decoder, with ``REENCODE_SETTINGS``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from storage.video import EncoderSettings, VideoError

log = logging.getLogger(__name__)

__all__ = ["REENCODE_SETTINGS", "StreamInfo", "VideoError", "concat_remux", "probe", "video_info"]

# Re-encode settings when remuxing is impossible: H.264 (every LeRobot decoder reads it), a short GOP (10 frames at
# 30 fps) so that LeRobot's seek-to-previous-keyframe decodes few frames per sample, visually near-lossless
# quality, x264 threads of its own choosing, and the index first so the files stream.
REENCODE_SETTINGS = EncoderSettings(gop_seconds=1 / 3, threads=0, faststart=True)


@dataclass(frozen=True)
class StreamInfo:
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    time_base: Fraction
    extradata: bytes
    pts: np.ndarray  # (N,) int64 presentation timestamps of all packets, sorted, in time_base units
    has_audio: bool

    @property
    def pts_seconds(self) -> np.ndarray:
        return self.pts.astype(np.float64) * float(self.time_base)


def probe(path: Path) -> StreamInfo:
    """Open a file and demux (no decoding) its first video stream; VideoError if it is unreadable or has none."""
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream")
            s = c.streams.video[0]
            pts = [p.pts for p in c.demux(s) if p.pts is not None and p.size > 0]
            cc = s.codec_context
            return StreamInfo(
                codec=s.codec.name,
                width=cc.width,
                height=cc.height,
                pix_fmt=cc.pix_fmt,
                time_base=Fraction(s.time_base),
                extradata=bytes(cc.extradata or b""),
                pts=np.sort(np.asarray(pts, dtype=np.int64)),
                has_audio=bool(c.streams.audio),
            )
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: {e}") from e


def video_info(path: Path, fps: int) -> dict:
    """The ``info`` block LeRobot's get_video_info stores in a video feature of meta/info.json."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pix_fmt = s.codec_context.pix_fmt or "yuv420p"
        channels = 1 if "gray" in pix_fmt else 4 if ("rgba" in pix_fmt or "yuva" in pix_fmt) else 3
        return {
            "video.height": s.codec_context.height,
            "video.width": s.codec_context.width,
            "video.codec": s.codec.canonical_name if hasattr(s.codec, "canonical_name") else s.codec.name,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(s.base_rate) if s.base_rate else fps,
            "video.channels": channels,
            "has_audio": bool(c.streams.audio),
        }


def _expected_pts(n: int, fps: int, time_base: Fraction) -> np.ndarray | None:
    """pts of frames 0..n-1 at 1/fps in time_base units, or None when they are not whole ticks."""
    step = Fraction(1, fps) / time_base
    if step.denominator != 1:
        return None
    return np.arange(n, dtype=np.int64) * int(step)


def concat_remux(sources: Sequence[Path], lengths: Sequence[int], fps: int, out: Path) -> bool:
    """Concatenate per-episode MP4s into ``out`` by shifting packet timestamps (no re-encoding).

    Episode i then starts at sum(lengths[:i]) / fps seconds. Returns False (and leaves no ``out``) when the
    inputs cannot be joined losslessly; the caller then re-encodes.
    """
    infos = [probe(p) for p in sources]
    first = infos[0]
    for p, info, n in zip(sources, infos, lengths, strict=True):
        same = (info.codec, info.width, info.height, info.pix_fmt, info.time_base, info.extradata) == (
            first.codec,
            first.width,
            first.height,
            first.pix_fmt,
            first.time_base,
            first.extradata,
        )
        expected = _expected_pts(n, fps, info.time_base)
        if not same or expected is None or not np.array_equal(info.pts, expected):
            log.info("cannot remux %s (codec parameters or timestamps differ); re-encoding instead", p)
            return False

    step = int(Fraction(1, fps) / first.time_base)
    ok = False
    try:
        with av.open(str(out), "w", format="mp4", options={"movflags": "faststart"}) as oc:
            with av.open(str(sources[0])) as tc:
                ostream = oc.add_stream_from_template(tc.streams.video[0], opaque=True)
                ostream.time_base = first.time_base
            last_dts: int | None = None
            offset_frames = 0
            for src, n in zip(sources, lengths, strict=True):
                shift = offset_frames * step
                with av.open(str(src)) as ic:
                    istream = ic.streams.video[0]
                    for packet in ic.demux(istream):
                        if packet.dts is None:  # demuxer flush packet
                            continue
                        packet.pts += shift
                        packet.dts += shift
                        if last_dts is not None and packet.dts <= last_dts:
                            raise VideoError(f"{src}: decode timestamps overlap the previous episode")
                        last_dts = packet.dts
                        packet.stream = ostream
                        oc.mux(packet)
                offset_frames += n
        total = sum(lengths)
        got = probe(out)
        ok = got.time_base == first.time_base and np.array_equal(got.pts, np.arange(total, dtype=np.int64) * step)
        if not ok:
            log.info("remuxed %s has unexpected timestamps; re-encoding instead", out)
    except VideoError as e:
        log.info("remux failed (%s); re-encoding instead", e)
    if not ok:
        out.unlink(missing_ok=True)
    return ok
