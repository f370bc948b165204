"""Issue 15's measures on known inputs: where a map's mass lies, and the occlusion test's ratio."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.services.faithfulness import GREY, OcclusionFrame, grey_box, occlusion_test
from backend.services.grounding import cell_coverage, mass_shares
from storage.features import OBS_STATE, image_key


def test_cell_coverage_is_the_boxed_fraction_of_each_cell():
    cover = cell_coverage((8, 0, 12, 8), (4, 4), (32, 32))  # 8 px cells: half of cell (0, 1)
    want = np.zeros((4, 4))
    want[0, 1] = 0.5
    np.testing.assert_allclose(cover, want)
    assert cell_coverage(None, (4, 4), (32, 32)).sum() == 0


def test_mass_shares_split_the_map_and_count_overlaps_once():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3], heat[1, 1] = 2.0, 1.0, 1.0
    shares = mass_shares(
        heat,
        {"instructed": [(0, 0, 8, 8)], "other_cubes": [(24, 24, 32, 32), None], "gripper": [(0, 0, 4, 8)]},
        (32, 32),
    )
    assert shares["instructed"] == pytest.approx(0.5) and shares["other_cubes"] == pytest.approx(0.25)
    assert shares["gripper"] == pytest.approx(0.25)  # half of the cell the instructed box covers
    assert shares["outside"] == pytest.approx(0.25)  # cell (1, 1): no box; the overlap is not counted twice
    assert mass_shares(np.zeros((2, 2)), {"instructed": [(0, 0, 1, 1)]}, (8, 8)) == {"instructed": 0.0, "outside": 1.0}


class RegionPolicy:
    """Its action is the mean brightness of the image's top-left 8 x 8 cell; its map points at `looks_at`."""

    def __init__(self, looks_at: tuple[int, int]):
        self.looks_at = looks_at

    def predict_chunk(self, obs, instructions):
        img = obs[image_key("front")][0]  # (H, W, 3) uint8
        value = float(img[:8, :8].mean())
        heat = torch.zeros(1, 4, 4)
        heat[0, self.looks_at[0], self.looks_at[1]] = 1.0
        return SimpleNamespace(actions=torch.full((1, 2, 3), value), attention={"front": heat})


def _frames(n: int) -> list[OcclusionFrame]:
    rng = np.random.default_rng(0)
    return [
        OcclusionFrame({image_key("front"): rng.integers(0, 60, (32, 32, 3), dtype=np.uint8),
                        OBS_STATE: np.zeros(2, np.float32)}, "pick up the red cube")  # fmt: skip
        for _ in range(n)
    ]


def test_occlusion_ratio_is_high_for_a_faithful_map_and_low_for_a_decorative_one():
    frames = _frames(40)
    faithful = occlusion_test(RegionPolicy((0, 0)), frames, camera="front")
    decorative = occlusion_test(RegionPolicy((2, 3)), frames, camera="front")
    assert faithful["frames"] == 40 and faithful["median_change_peak"] > 0
    assert faithful["median_change_random"] == 0.0 and faithful["ratio"] is None  # random cells never matter
    assert decorative["median_change_peak"] == 0.0  # what it points at is not what the action uses
    empty = occlusion_test(RegionPolicy((0, 0)), [], camera="front")
    assert empty == {"frames": 0, "map": "attention", "camera": "front"}


def test_grey_box_paints_only_the_box():
    img = np.zeros((10, 10, 3), np.uint8)
    out = grey_box(img, (2.2, 3.0, 4.0, 5.5))
    assert (out[3:6, 2:4] == GREY).all() and out.sum() == GREY * 3 * 2 * 3 and img.sum() == 0
