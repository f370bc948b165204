"""Episode data for behavioural cloning: decode each episode once, serve windows of future actions.

Decoded frames live in the memory-mapped frame cache (vla_core.frame_cache; training's default is
<data_dir>/cache/frames), one .npy per episode and camera at the policy's image size, so a training step is a
gather of B rows out of the maps rather than a video seek (on a 2-core machine video decode per step would cost
more than the model), and private memory does not grow with the dataset: 1,500 episodes x ~100 steps x 2 cameras
at 96 px is ~8 GB of uint8 on disk, of which only the pages batches touch are resident (as reclaimable page
cache). Without a cache_dir, frames are decoded into RAM (tests, one-off tools). Batches follow the contract in
storage.features + ACTION_IS_PAD:

    batch[image_key(cam)]  uint8 (B, 3, H, W)
    batch[OBS_STATE]       float32 (B, D_state)
    batch[ACTION]          float32 (B, T, D_action)  steps t .. t+T-1, padded by repeating the last action
    batch[ACTION_IS_PAD]   bool (B, T)
    batch[TASK]            list[str] (B,)
    batch[grounding_key(cam)] float32 (B, 2)  training-only: the instructed object's (x, y) in [-1, 1], NaN where
                           unknown (only when the episodes carry it: the sim records it, real data does not);
                           shifted with the image by the augmentation
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from storage.episode_meta import read_signals
from storage.episode_store import EpisodeInfo, EpisodeStore
from storage.errors import NotFoundError
from storage.features import ACTION, OBS_STATE, TASK, grounding_key, image_key
from storage.snapshots import SnapshotService
from storage.video import read_video
from vla_core import frame_cache
from vla_core.constants import ACTION_IS_PAD

__all__ = [
    "ACTION_IS_PAD",
    "Augmentation",
    "EpisodeData",
    "WindowDataset",
    "augment_images",
    "build_datasets",
    "decode_video",
    "load_episode",
    "load_episodes",
    "normalization_stats",
    "split_episodes",
]


# ----------------------------------------------------------------------------------------------- decoding
def decode_video(path, size: int) -> np.ndarray:
    """Decode an MP4 to (T, 3, size, size) uint8, area-averaged when shrinking (see storage.video.read_video)."""
    return np.ascontiguousarray(read_video(path, size=(size, size)).transpose(0, 3, 1, 2))


def _video_checksum(info: EpisodeInfo, video: Path, cam: str) -> str:
    checksum = info.checksums.get(f"videos/{cam}.mp4")
    if checksum is None:  # an episode recorded without checksums: its file's identity stands in for its content
        st = video.stat()
        checksum = f"{info.uid}:{st.st_size}:{st.st_mtime_ns}"
    return checksum


def prune_frame_cache(store: EpisodeStore, cache_dir: Path | str | None = None) -> list[Path]:
    """Delete the frame-cache files no episode of `store` will use again (purged episodes, rewritten videos, old
    cache versions, a killed writer's temporary files); trashed episodes keep theirs (they may be restored)."""
    live = {}
    for info in store.list_episodes(include_trashed=True):  # one query; the files are read only without checksums
        names = [c.name for c in info.cameras]
        if any(f"videos/{cam}.mp4" not in info.checksums for cam in names):
            videos = store.episode_files(info.id).videos
            live[info.id] = {frame_cache.video_key(c, _video_checksum(info, v, c)) for c, v in videos.items()}
        else:
            live[info.id] = {frame_cache.video_key(c, info.checksums[f"videos/{c}.mp4"]) for c in names}
    return frame_cache.prune(cache_dir or frame_cache.default_cache_dir(store.data_dir), live)


def _frames(info: EpisodeInfo, video: Path, cam: str, size: int, cache_dir) -> np.ndarray:
    """(T, 3, size, size) uint8: decoded into RAM, or a read-only memory map of the frame cache in `cache_dir`."""
    if cache_dir is None:
        return decode_video(video, size)
    checksum = _video_checksum(info, video, cam)
    path = frame_cache.cache_file(cache_dir, episode_id=info.id, camera=cam, size=size, checksum=checksum)
    return frame_cache.load_or_decode(path, size=size, video=video, decode=decode_video)


@dataclass
class EpisodeData:
    """One episode: state and action in RAM, frames in RAM or memory-mapped from the frame cache."""

    episode_id: int
    task: str
    instruction: str
    colour: str | None
    success: bool | None
    images: dict[str, np.ndarray]  # camera -> (T, 3, H, W) uint8, in RAM or a read-only map of the frame cache
    state: np.ndarray  # (T, D_state) float32
    action: np.ndarray  # (T, D_action) float32
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # grounding_key(cam) -> (T, 2) float32, if recorded

    def __len__(self) -> int:
        return len(self.state)


def load_episode(
    store: EpisodeStore,
    info: EpisodeInfo,
    cameras: Sequence[str],
    image_size: int,
    *,
    cache_dir: Path | str | None = None,
) -> EpisodeData:
    table = store.read_table(info.id)
    state = np.asarray(table.column(OBS_STATE).to_pylist(), dtype=np.float32)
    action = np.asarray(table.column(ACTION).to_pylist(), dtype=np.float32)
    signals = read_signals(table)
    files = store.episode_files(info.id)
    images = {}
    for cam in cameras:
        if cam not in files.videos:
            raise ValueError(f"episode {info.id} has no camera {cam!r} (it has {sorted(files.videos)})")
        frames = _frames(info, files.videos[cam], cam, image_size, cache_dir)
        if len(frames) != len(state):
            raise ValueError(f"episode {info.id}: {cam} video has {len(frames)} frames but the table {len(state)}")
        images[cam] = frames
    return EpisodeData(
        episode_id=info.id,
        task=info.task,
        instruction=info.instruction,
        colour=info.extra.get("colour"),
        success=info.effective_success,  # the operator's verdict, else the automatic check
        images=images,
        state=state,
        action=action,
        signals=signals,
    )


def list_dataset_episodes(
    store: EpisodeStore, dataset: str, *, only_successful: bool = True, snapshot: int | str | None = None
) -> list[EpisodeInfo]:
    """The episodes of `dataset` to learn from, with a clear ValueError for an unknown or empty dataset.

    With `snapshot` (its id or name), the snapshot's episodes with the annotations frozen in it (instruction,
    paraphrases, segments, success labels), whatever they say now: what a training job trains on."""
    what = f"dataset {dataset!r}"
    if snapshot is not None:
        try:
            infos = SnapshotService(store.session_factory, store).episodes(snapshot)
        except NotFoundError as error:
            raise ValueError(str(error)) from None
        what = f"snapshot {snapshot!r}"
    else:
        try:
            infos = store.list_episodes(dataset)
        except NotFoundError:
            known = ", ".join(d.name for d in store.list_datasets()) or "none"
            raise ValueError(f"unknown dataset {dataset!r}; datasets in the store: {known}") from None
    if not infos:
        raise ValueError(f"{what} has no episodes")
    if only_successful:
        kept = [i for i in infos if i.effective_success is not False]
        if not kept:
            raise ValueError(f"{what} has {len(infos)} episodes but none is marked successful")
        infos = kept
    infos = [i for i in infos if i.length > 0]
    if not infos:
        raise ValueError(f"{what} has only empty episodes")
    return infos


def load_episodes(
    store: EpisodeStore,
    infos: Sequence[EpisodeInfo],
    *,
    cameras: Sequence[str],
    image_size: int,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: Path | str | None = None,
) -> list[EpisodeData]:
    """Decode every episode once (videos resized to `image_size`).

    With `cache_dir`, frames come back as read-only memory maps of the frame cache (see vla_core.frame_cache): a
    file per episode and camera, keyed by episode id, video checksum and size, so a second run (a resumed job,
    another DDP rank) maps them without decoding and a changed video is decoded again. Without it, into RAM.
    """
    if cache_dir is not None:
        frame_cache.ensure_open_files(len(infos) * len(cameras))
    out = []
    for i, info in enumerate(infos):
        out.append(load_episode(store, info, cameras, image_size, cache_dir=cache_dir))
        if progress is not None:
            progress(i + 1, len(infos))
    return out


# ----------------------------------------------------------------------------------------------- split + stats
def split_episodes(
    episodes: Sequence[EpisodeData], val_fraction: float, seed: int
) -> tuple[list[EpisodeData], list[EpisodeData]]:
    """Split by episode (never by frame: neighbouring frames are near-duplicates), per (task, colour) group so
    every group is represented in validation. At least one episode per group stays in training."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[EpisodeData]] = {}
    for ep in sorted(episodes, key=lambda e: e.episode_id):
        groups.setdefault((ep.task, ep.colour), []).append(ep)
    train, val = [], []
    for key in sorted(groups, key=str):
        members = groups[key]
        order = rng.permutation(len(members))
        n_val = min(int(round(val_fraction * len(members))), len(members) - 1)
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    train.sort(key=lambda e: e.episode_id)
    val.sort(key=lambda e: e.episode_id)
    return train, val


def normalization_stats(
    episodes: Sequence[EpisodeData],
    min_std: float = 1e-2,
    *,
    chunk_size: int = 1,
    relative_dims: int = 0,
) -> dict:
    """{OBS_STATE: {"mean", "std"}, ACTION: {"mean", "std"}} over every frame (lists of floats).

    With `relative_dims` = n > 0 the ACTION stats are those of the policy's *targets*: for every frame t and chunk
    step k < `chunk_size` (inside the episode), action[t + k, :n] - state[t, :n] (the first n action dims relative
    to the same state dims; the rest absolute). The std floor keeps a constant dimension (e.g. a roll joint the
    expert never moves) from blowing up.
    """
    out = {OBS_STATE: _mean_std(np.concatenate([e.state for e in episodes]), min_std)}
    if relative_dims <= 0:
        out[ACTION] = _mean_std(np.concatenate([e.action for e in episodes]), min_std)
        return out
    targets = []
    for e in episodes:
        n = len(e)
        for k in range(min(chunk_size, n)):
            a = e.action[k:].astype(np.float64)  # (n - k, D): action t + k for t = 0 .. n - k - 1
            a[:, :relative_dims] -= e.state[: n - k, :relative_dims]
            targets.append(a)
    out[ACTION] = _mean_std(np.concatenate(targets), min_std)
    return out


def _mean_std(x: np.ndarray, min_std: float) -> dict:
    x = x.astype(np.float64)
    return {"mean": x.mean(0).tolist(), "std": np.maximum(x.std(0), min_std).tolist()}


# ----------------------------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augmentation:
    """Image augmentation for training: a random shift (pad by replication, crop back) and a brightness/contrast
    jitter applied equally to R, G and B, so hue is kept: the task is colour-conditioned and a hue shift could
    turn the red cube orange."""

    max_shift: int = 6  # pixels, each axis
    brightness: float = 0.15  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.15  # blend with the image's mean grey: U(1 - c, 1 + c)
    enabled: bool = True


def augment_images(
    images: torch.Tensor, aug: Augmentation, generator: torch.Generator, points: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Augment a uint8 (B, 3, H, W) batch; returns uint8 of the same shape. Deterministic given `generator`.

    With `points` (B, 2): image positions (x, y) in [-1, 1] (the grounding signal), also returns them moved with
    the shift, NaN where the shift pushed them out of the image."""
    if not aug.enabled:
        return images if points is None else (images, points)
    b, _, h, w = images.shape
    moved = None
    x = images
    s = int(aug.max_shift)
    if s > 0:
        padded = torch.nn.functional.pad(x.float(), (s, s, s, s), mode="replicate")
        dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        # Gather rows/cols per sample: index grids (B, H) and (B, W) offset by each sample's shift.
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None].expand(b, 3, h, w + 2 * s)
        x = padded.gather(2, rows)
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :].expand(b, 3, h, w)
        x = x.gather(3, cols)
        if points is not None:  # output pixel r shows input pixel r + d - s: content moves by s - d pixels
            shift = torch.stack([(s - dx).float() * 2 / w, (s - dy).float() * 2 / h], -1)  # (B, 2) in [-1, 1] units
            moved = points.float() + shift
            moved[~(moved.abs() <= 1.0).all(-1)] = float("nan")
    else:
        x = x.float()
    if aug.brightness > 0:
        x = x * (1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * aug.brightness)
    if aug.contrast > 0:
        c = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * aug.contrast
        grey = x.mean(dim=(1, 2, 3), keepdim=True)  # one value for all channels: the hue is untouched
        x = (x - grey) * c + grey
    out = x.round_().clamp_(0, 255).to(torch.uint8)
    if points is None:
        return out
    return out, (points.float() if moved is None else moved)


# ----------------------------------------------------------------------------------------------- windows
@dataclass
class WindowDataset(torch.utils.data.Dataset):
    """Every frame of a set of episodes, each with its chunk of `chunk_size` future actions.

    State and action are concatenated across episodes: state (N, D), action (N, D); chunk_index (N, T) points at
    the action rows of each window and is_pad (N, T) marks steps past the end. Images stay with their episodes
    (memory maps of the frame cache, never concatenated: that would copy the whole dataset into RAM); frame i is
    step frame_step[i] of episode frame_episode[i]. `sample_batch` gathers a whole batch (the fast path training
    uses); `__getitem__` + `collate` serve a torch DataLoader if someone prefers one.
    """

    episodes: Sequence[EpisodeData]
    chunk_size: int
    cameras: Sequence[str]
    paraphrases: Mapping[str, Sequence[str]] | None = None
    state: np.ndarray = field(init=False)
    action: np.ndarray = field(init=False)
    chunk_index: np.ndarray = field(init=False)
    is_pad: np.ndarray = field(init=False)
    instructions: list[str] = field(init=False)
    frame_episode: np.ndarray = field(init=False)
    frame_step: np.ndarray = field(init=False)
    signals: dict[str, np.ndarray] = field(init=False)  # grounding_key(cam) -> (N, 2), NaN where not recorded

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")
        if not self.episodes:
            raise ValueError("a window dataset needs at least one episode")
        for c in self.cameras:
            shapes = {e.images[c].shape[1:] for e in self.episodes}
            if len(shapes) != 1:
                raise ValueError(f"camera {c!r} frames differ in shape across episodes: {sorted(shapes)}")
        self.state = np.concatenate([e.state for e in self.episodes]).astype(np.float32)
        self.action = np.concatenate([e.action for e in self.episodes]).astype(np.float32)
        idx, pad, ep_of, step_of = [], [], [], []
        start = 0
        k = np.arange(self.chunk_size)
        for i, e in enumerate(self.episodes):
            n = len(e)
            t = np.arange(n)[:, None] + k[None, :]  # (n, T) step indices within the episode
            idx.append(start + np.minimum(t, n - 1))  # past the end: repeat the last action
            pad.append(t > n - 1)
            ep_of.append(np.full(n, i))
            step_of.append(np.arange(n))
            start += n
        self.chunk_index = np.concatenate(idx)
        self.is_pad = np.concatenate(pad)
        self.frame_episode = np.concatenate(ep_of)
        self.frame_step = np.concatenate(step_of)
        self.instructions = [e.instruction for e in self.episodes]
        # Grounding signals of the cameras trained on, when any episode has them (NaN rows for those that do not).
        self.signals = {}
        for key in (grounding_key(c) for c in self.cameras):
            if any(key in e.signals for e in self.episodes):
                self.signals[key] = np.concatenate(
                    [e.signals.get(key, np.full((len(e), 2), np.nan, np.float32)) for e in self.episodes]
                ).astype(np.float32)

    def __len__(self) -> int:
        return len(self.state)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def instruction_for(self, frame: int, rng: np.random.Generator | None) -> str:
        """The stored instruction, or (with `rng` and a paraphrase table) a random paraphrase of it."""
        text = self.instructions[int(self.frame_episode[frame])]
        if rng is None or not self.paraphrases:
            return text
        options = self.paraphrases.get(text)
        if not options:
            return text
        return str(options[int(rng.integers(len(options)))])

    def frames(self, cam: str, indices: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) uint8 copies of frames `indices` of camera `cam`, one row read out of each episode's map."""
        first = self.episodes[0].images[cam]
        out = np.empty((len(indices), *first.shape[1:]), dtype=first.dtype)
        episode, step = self.frame_episode[indices].tolist(), self.frame_step[indices].tolist()
        for j, (e, t) in enumerate(zip(episode, step, strict=True)):
            out[j] = self.episodes[e].images[cam][t]
        return out

    def sample_batch(
        self,
        indices: np.ndarray,
        *,
        rng: np.random.Generator | None = None,
        augmentation: Augmentation | None = None,
        generator: torch.Generator | None = None,
    ) -> dict:
        """The contract batch for frame `indices` (B,). `rng` draws paraphrases; `augmentation` + `generator`
        augment images (training). Without them the batch is exact (validation, calibration)."""
        indices = np.asarray(indices, dtype=np.int64)
        batch: dict = {}
        for cam in self.cameras:
            imgs = torch.from_numpy(self.frames(cam, indices))
            points = self.signals.get(grounding_key(cam))
            points = None if points is None else torch.from_numpy(points[indices])
            if augmentation is not None and augmentation.enabled:
                if generator is None:
                    raise ValueError("augmentation needs a torch.Generator for reproducibility")
                if points is None:
                    imgs = augment_images(imgs, augmentation, generator)
                else:
                    imgs, points = augment_images(imgs, augmentation, generator, points)
            batch[image_key(cam)] = imgs
            if points is not None:
                batch[grounding_key(cam)] = points
        batch[OBS_STATE] = torch.from_numpy(self.state[indices])
        batch[ACTION] = torch.from_numpy(self.action[self.chunk_index[indices]])
        batch[ACTION_IS_PAD] = torch.from_numpy(self.is_pad[indices])
        batch[TASK] = [self.instruction_for(int(i), rng) for i in indices]
        return batch

    def __getitem__(self, index: int) -> dict:
        b = self.sample_batch(np.array([index]))
        return {k: (v[0] if isinstance(v, torch.Tensor | list) else v) for k, v in b.items()}

    @staticmethod
    def collate(items: Sequence[dict]) -> dict:
        out = {}
        for key in items[0]:
            vals = [it[key] for it in items]
            out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else list(vals)
        return out


def build_datasets(
    episodes: Sequence[EpisodeData],
    *,
    chunk_size: int,
    cameras: Sequence[str],
    val_fraction: float,
    seed: int,
    paraphrases: Mapping[str, Sequence[str]] | None = None,
) -> tuple[WindowDataset, WindowDataset | None]:
    """Train and (if any episode is held out) validation window datasets, split by episode."""
    train_eps, val_eps = split_episodes(episodes, val_fraction, seed)
    train = WindowDataset(train_eps, chunk_size, cameras, paraphrases)
    val = WindowDataset(val_eps, chunk_size, cameras, None) if val_eps else None
    return train, val
