"""`torchvision.io.VideoReader` (pyav backend) re-implemented over PyAV with the same observable behaviour.

torchvision 0.2x, pyav backend:
- `VideoReader(path, "video")` opens the container and starts decoding stream video:0;
- `seek(t, keyframes_only)` clamps t < 0 to 0, seeks backward to the keyframe at or before t
  (`container.seek(int(round(t / time_base)), backward=True, any_frame=False, stream=s)`; accurate seek is not
  implemented for pyav, so keyframes_only=False only warns) and restarts decoding there;
- iterating yields {"data": (C, H, W) uint8 tensor (RGB), "pts": float seconds} until the stream ends;
- `.container` is the PyAV container (LeRobot closes it).
"""

from __future__ import annotations

import warnings

import av
import torch


class VideoReader:
    def __init__(self, src: str, stream: str = "video", num_threads: int = 0) -> None:
        stream_type, _, index = stream.partition(":")
        if stream_type != "video":
            raise NotImplementedError("torchvision shim decodes video streams only")
        self.pyav_stream = {"video": int(index) if index else 0}
        self.container = av.open(str(src), metadata_errors="ignore")
        self._c = self.container.decode(**self.pyav_stream)

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> dict:
        try:
            frame = next(self._c)
        except (av.error.EOFError, StopIteration):
            raise StopIteration from None
        pts = float(frame.pts * frame.time_base)
        data = torch.from_numpy(frame.to_rgb().to_ndarray()).permute(2, 0, 1)  # (C, H, W) uint8
        return {"data": data, "pts": pts}

    def seek(self, time_s: float, keyframes_only: bool = False) -> VideoReader:
        time_s = max(time_s, 0.0)
        streams = self.container.streams.get(**self.pyav_stream)
        if len(streams) != 1:
            raise RuntimeError(f"expected one stream for {self.pyav_stream}, found {len(streams)}")
        offset = int(round(time_s / streams[0].time_base))
        if not keyframes_only:
            warnings.warn("Accurate seek is not implemented for pyav backend", stacklevel=2)
        self.container.seek(offset, backward=True, any_frame=False, stream=streams[0])
        self._c = self.container.decode(**self.pyav_stream)
        return self

    def get_metadata(self) -> dict:
        s = self.container.streams.video[self.pyav_stream["video"]]
        duration = float(s.duration * s.time_base) if s.duration is not None else None
        return {"video": {"duration": [duration], "fps": [float(s.average_rate or s.base_rate)]}}
