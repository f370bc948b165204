"""storage.video, the one writer and decoder: frames written one at a time come back in order, by index or time."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage import video

FPS, H, W, N = 10, 48, 64, 12


def frames() -> list[np.ndarray]:
    """N flat-coloured (H, W, 3) frames, each far from the others, so a swap or a shift would show."""
    return [np.full((H, W, 3), (20 * k, 255 - 20 * k, 128), dtype=np.uint8) for k in range(N)]


@pytest.fixture
def mp4(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    with video.VideoWriter(path, fps=FPS, height=H, width=W) as writer:
        for image in frames():
            writer.write(image)
    assert writer.frames == N
    return path


def test_round_trip_in_order(mp4: Path) -> None:
    decoded = video.read_video(mp4)
    assert decoded.shape == (N, H, W, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - np.stack(frames())).max() <= 3  # lossy, but every frame in its place
    np.testing.assert_array_equal(video.first_frame(mp4), decoded[0])
    np.testing.assert_array_equal(video.decode_at(mp4, [3 / FPS, 0.0, 11 / FPS], 1e-4), decoded[[3, 0, 11]])
    with pytest.raises(video.VideoError, match="fewer frames"):
        video.decode_at(mp4, [0.0, N / FPS], 1e-4)
    assert video.probe_video(mp4) | {"fps": round(video.probe_video(mp4)["fps"])} == {
        "frames": N, "height": H, "width": W, "codec": "h264", "fps": FPS,
    }  # fmt: skip


def test_resize_and_thumbnail(mp4: Path) -> None:
    assert video.read_video(mp4, size=(24, 32)).shape == (N, 24, 32, 3)  # shrink: area average
    assert video.read_video(mp4, size=(96, 96)).shape == (N, 96, 96, 3)  # enlarge: bilinear
    thumb = Image.open(io.BytesIO(video.thumbnail_jpeg(mp4, 32)))
    assert thumb.format == "JPEG" and thumb.size == (32, 24)


def test_write_video_with_faststart_puts_the_index_first(tmp_path: Path) -> None:
    path = tmp_path / "fast.mp4"
    settings = video.EncoderSettings(faststart=True, threads=0)
    assert video.write_video(frames(), path, fps=FPS, height=H, width=W, settings=settings) == N
    head = path.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")
    assert len(video.read_video(path)) == N


def test_unreadable_file_raises_video_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(video.VideoError):
        video.read_video(bad)
    with pytest.raises(video.VideoError):
        video.first_frame(bad)
    assert video.can_decode("h264") and not video.can_decode("no-such-codec")
