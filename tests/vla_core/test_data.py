"""The training data pipeline: decode once, windows with padding, paraphrases, hue-keeping augmentation, split."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from helpers import record_episode

from storage.episode_store import CameraSpec
from storage.features import ACTION, OBS_STATE, TASK, image_key
from vla_core import data as vdata
from vla_core.data import ACTION_IS_PAD

CAMS = [CameraSpec("front", 48, 48), CameraSpec("wrist", 40, 40)]
NAMES = [f"j{i}" for i in range(6)] + ["gripper"]


def record(store, *, n, colour="red", instruction=None, success=True, offset=0.0, dataset="ds"):
    """An episode whose action at step t is (offset + t) in every dimension; frames a flat grey level t*4."""

    def step(t, cameras):
        images = {c.name: np.full((c.height, c.width, 3), 4 * t + 20, np.uint8) for c in cameras}
        return dict(images=images, state=np.full(7, t, np.float32), action=np.full(7, offset + t, np.float32))

    return record_episode(
        store, n, step=step, auto_success=success, dataset=dataset, source="scripted",
        instruction=instruction or f"pick up the {colour} cube", cameras=CAMS, state_names=NAMES,
        action_names=NAMES, operator="t", seed=0, extra={"colour": colour},
    )  # fmt: skip


def test_windows_pad_by_repeating_the_last_action(store):
    record(store, n=6, offset=100.0)
    record(store, n=4, offset=200.0)
    infos = vdata.list_dataset_episodes(store, "ds")
    eps = vdata.load_episodes(store, infos, cameras=["front", "wrist"], image_size=32)
    assert eps[0].images["front"].shape == (6, 3, 32, 32) and eps[0].images["front"].dtype == np.uint8
    ds = vdata.WindowDataset(eps, chunk_size=3, cameras=["front", "wrist"])
    assert len(ds) == 10
    batch = ds.sample_batch(np.array([4, 6, 9]))
    assert batch[image_key("front")].shape == (3, 3, 32, 32) and batch[image_key("front")].dtype == torch.uint8
    assert batch[OBS_STATE].shape == (3, 7) and batch[OBS_STATE].dtype == torch.float32
    assert batch[ACTION].shape == (3, 3, 7)
    # Episode 1 step 4 of 6: steps 4, 5, then the last (5) repeated and marked as padding.
    assert batch[ACTION][0, :, 0].tolist() == [104.0, 105.0, 105.0]
    assert batch[ACTION_IS_PAD][0].tolist() == [False, False, True]
    # Episode 2 step 0 never crosses into episode 1; its last step is all padding after itself.
    assert batch[ACTION][1, :, 0].tolist() == [200.0, 201.0, 202.0]
    assert batch[ACTION][2, :, 0].tolist() == [203.0, 203.0, 203.0]
    assert batch[ACTION_IS_PAD][2].tolist() == [False, True, True]
    assert batch[TASK] == ["pick up the red cube"] * 3
    # Frames decoded in order (grey level 4t + 20, within codec error) and the single-item path agrees.
    assert abs(int(batch[image_key("front")][0].float().mean()) - (4 * 4 + 20)) <= 2
    item = ds[4]
    assert torch.equal(item[ACTION], batch[ACTION][0])
    collated = vdata.WindowDataset.collate([ds[4], ds[6]])
    assert collated[ACTION].shape == (2, 3, 7) and collated[TASK] == ["pick up the red cube"] * 2


def test_paraphrases_replace_the_instruction_within_task_and_colour(store):
    record(store, n=5)
    eps = vdata.load_episodes(store, vdata.list_dataset_episodes(store, "ds"), cameras=["front"], image_size=16)
    table = {"pick up the red cube": ["pick up the red cube", "lift the red block", "raise the red cube"]}
    ds = vdata.WindowDataset(eps, chunk_size=2, cameras=["front"], paraphrases=table)
    rng = np.random.default_rng(0)
    seen = {t for _ in range(20) for t in ds.sample_batch(np.arange(5), rng=rng)[TASK]}
    assert seen == set(table["pick up the red cube"])
    assert ds.sample_batch(np.arange(5))[TASK] == ["pick up the red cube"] * 5  # no rng: the stored text


def test_augmentation_shifts_and_keeps_hue():
    gen = torch.Generator().manual_seed(0)
    img = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    img[:, 0, 12:20, 12:20] = 200  # a red square on black
    img[:, 1, 12:20, 12:20] = 30
    img[:, 2, 12:20, 12:20] = 20
    aug = vdata.Augmentation(max_shift=4, brightness=0.3, contrast=0.3)
    out = vdata.augment_images(img, aug, gen)
    assert out.shape == img.shape and out.dtype == torch.uint8
    assert not torch.equal(out, img)
    hue0 = colorsys.rgb_to_hsv(200 / 255, 30 / 255, 20 / 255)[0]
    for b in range(8):
        ys, xs = torch.nonzero(out[b, 0] > 60, as_tuple=True)
        # Moved by at most max_shift in each direction, size unchanged.
        assert 8 <= int(ys.min()) <= 16 and 8 <= int(xs.min()) <= 16
        r, g, bl = (float(out[b, c, int(ys[0]), int(xs[0])]) / 255 for c in range(3))
        hue = colorsys.rgb_to_hsv(r, g, bl)[0]
        assert min(abs(hue - hue0), 1 - abs(hue - hue0)) < 0.03  # still red
    # Same generator seed, same result; disabled is the identity.
    assert torch.equal(vdata.augment_images(img, aug, torch.Generator().manual_seed(0)), out)
    assert torch.equal(vdata.augment_images(img, vdata.Augmentation(enabled=False), gen), img)


def test_split_by_episode_per_colour_and_stats(store):
    for colour in ("red", "green"):
        for i in range(5):
            record(store, n=3 + i, colour=colour)
    eps = vdata.load_episodes(store, vdata.list_dataset_episodes(store, "ds"), cameras=["front"], image_size=8)
    train, val = vdata.split_episodes(eps, 0.2, seed=1)
    assert {e.episode_id for e in train}.isdisjoint({e.episode_id for e in val})
    assert len(train) + len(val) == 10
    assert sorted(e.colour for e in val) == ["green", "red"]  # one held out of each colour
    assert vdata.split_episodes(eps, 0.2, seed=1)[1] == val  # deterministic
    assert vdata.split_episodes(eps[:1], 0.5, seed=0) == (eps[:1], [])  # never empties training
    stats = vdata.normalization_stats(train)
    assert set(stats) == {OBS_STATE, ACTION}
    assert len(stats[ACTION]["mean"]) == 7 and min(stats[ACTION]["std"]) > 0


def test_unknown_empty_and_failed_datasets_give_clear_errors(store):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        vdata.list_dataset_episodes(store, "nope")
    store.ensure_dataset("empty")
    with pytest.raises(ValueError, match="'empty' has no episodes"):
        vdata.list_dataset_episodes(store, "empty")
    record(store, n=3, success=False, dataset="failed")
    with pytest.raises(ValueError, match="none is marked successful"):
        vdata.list_dataset_episodes(store, "failed")
    assert len(vdata.list_dataset_episodes(store, "failed", only_successful=False)) == 1


def test_decode_cache_round_trip(store, tmp_path):
    record(store, n=4)
    infos = vdata.list_dataset_episodes(store, "ds")
    a = vdata.load_episodes(store, infos, cameras=["front"], image_size=16, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    b = vdata.load_episodes(store, infos, cameras=["front"], image_size=16, cache_dir=tmp_path / "cache")
    assert np.array_equal(a[0].images["front"], b[0].images["front"])


def test_relative_action_stats_are_those_of_the_chunk_targets():
    """relative_dims=n: stats of action[t + k, :n] - state[t, :n] over every in-episode (t, k); the rest absolute."""
    rng = np.random.default_rng(0)
    state = np.cumsum(rng.normal(0, 0.01, (30, 3)), 0).astype(np.float32) + 1.0  # a slow walk far from 0
    action = np.concatenate([state[1:], state[-1:]])  # next-step joint targets: tiny relative to the state
    action[:, 2] = rng.uniform(0, 1, 30)  # an absolute "gripper"
    ep = vdata.EpisodeData(1, "pick", "x", "red", True, {}, state, action.astype(np.float32))
    absolute = vdata.normalization_stats([ep])
    rel = vdata.normalization_stats([ep], chunk_size=4, relative_dims=2)
    targets = np.concatenate([action[k:] - np.c_[state[: 30 - k, :2], np.zeros(30 - k)] for k in range(4)])
    np.testing.assert_allclose(rel[ACTION]["mean"], targets.mean(0), atol=1e-6)
    np.testing.assert_allclose(rel[ACTION]["std"], np.maximum(targets.std(0), 1e-2), atol=1e-6)
    assert abs(rel[ACTION]["mean"][0]) < 0.1 < absolute[ACTION]["mean"][0]  # the offset of ~1 is gone
    assert rel[OBS_STATE] == absolute[OBS_STATE]


def test_grounding_signal_moves_with_the_augmented_image():
    """The instructed object's (x, y) travels with the random shift (NaN once shifted out of view), and giving the
    points draws nothing extra from the generator: the images are the same as without them."""
    img = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    img[:, :, 10:12, 20:22] = 255  # a 2 px square centred at pixel (x 21, y 11)
    centre = torch.tensor([[(21.0 / 32) * 2 - 1, (11.0 / 32) * 2 - 1]]).repeat(16, 1)  # pixel edge convention
    aug = vdata.Augmentation(max_shift=4, brightness=0.0, contrast=0.0)
    out, moved = vdata.augment_images(img, aug, torch.Generator().manual_seed(3), centre)
    assert torch.equal(out, vdata.augment_images(img, aug, torch.Generator().manual_seed(3)))
    for b in range(16):
        ys, xs = torch.nonzero(out[b, 0] > 128, as_tuple=True)
        want = torch.tensor([(xs.float().mean() + 0.5) / 32 * 2 - 1, (ys.float().mean() + 0.5) / 32 * 2 - 1])
        assert torch.allclose(moved[b], want, atol=1e-5), (b, moved[b], want)
    edge = torch.tensor([[0.99, -0.99]]).repeat(16, 1)  # at the top-right corner: most shifts push it out
    _, gone = vdata.augment_images(img, aug, torch.Generator().manual_seed(3), edge)
    known = ~torch.isnan(gone).any(-1)
    assert 0 < int(known.sum()) < 16 and bool((gone[known].abs() <= 1).all())


def test_windows_carry_the_grounding_signal(store):
    """Episodes recorded with the sim's grounding signal put it in the batch under grounding_key(camera), NaN for
    an episode without it; a camera without the signal gets no key (the loss then skips it)."""
    from storage.features import grounding_key

    def step(t, cameras):
        images = {c.name: np.full((c.height, c.width, 3), 4 * t + 20, np.uint8) for c in cameras}
        xy = [np.nan, np.nan] if t == 1 else [t / 10, -t / 10]  # frame 1: out of view
        return dict(images=images, state=np.full(7, t, np.float32), action=np.full(7, t, np.float32),
                    signals={grounding_key("front"): xy})  # fmt: skip

    record_episode(store, 4, step=step, dataset="ds", source="scripted", instruction="pick up the red cube",
                   cameras=CAMS, state_names=NAMES, action_names=NAMES, operator="t", seed=0,
                   extra={"colour": "red"})  # fmt: skip
    record(store, n=3)  # no signal
    infos = vdata.list_dataset_episodes(store, "ds")
    eps = vdata.load_episodes(store, infos, cameras=["front", "wrist"], image_size=32)
    ds = vdata.WindowDataset(eps, 2, ["front", "wrist"])
    batch = ds.sample_batch(np.arange(len(ds)))
    assert grounding_key("wrist") not in batch
    got = batch[grounding_key("front")]
    assert got.shape == (7, 2) and got.dtype == torch.float32
    assert torch.allclose(got[[0, 2, 3]], torch.tensor([[0.0, 0.0], [0.2, -0.2], [0.3, -0.3]]))
    assert torch.isnan(got[1]).all() and torch.isnan(got[4:]).all()
