"""Batch keys and per-step column names, one place for all: the same names as the LeRobot dataset format
(lerobot/utils/constants.py), so a stored table, an exported dataset and a training batch agree.

The policy (vla_core) reads batches with these keys too; add new keys here, never as string literals elsewhere.
"""

OBS_STATE = "observation.state"  # (D_state,) float32 per step
ACTION = "action"  # (D_action,) float32 per step
OBS_IMAGES_PREFIX = "observation.images."  # + camera name -> (H, W, 3) uint8 frames (stored as video)
TIMESTAMP = "timestamp"  # float32 seconds since the episode started
FRAME_INDEX = "frame_index"  # int64 step index within the episode
EPISODE_INDEX = "episode_index"  # int64, in exported datasets
INDEX = "index"  # int64 global step index, in exported datasets
TASK_INDEX = "task_index"  # int64 into meta/tasks.parquet, in exported datasets
TASK = "task"  # the language instruction string, in training batches
# Policy rollouts with a human in the loop: per step, whether an operator (not the policy) produced the action (the
# name LeRobot's human-in-the-loop recording uses), and which command source did ("policy" | "teleop" | "expert").
INTERVENTION = "intervention"  # bool per step
ACTOR = "actor"  # string per step in the episode table; int64 index into meta/info.json's "actor" names on export
UNCERTAINTY = "uncertainty"  # float32 per step: the driving policy's score (NaN where no policy predicted); ours only


# Training-only signals a simulator can give per step and a real robot cannot (stored as per-step columns when a take
# has them; policies use them as extra supervision, never as inputs).
GROUNDING_PREFIX = "grounding."  # + camera + ".xy" -> (2,) float32: the instructed object's centre in that image


def grounding_key(camera: str) -> str:
    """Column / batch key of the instructed object's centre in `camera`'s image: (x, y) in [-1, 1] (x right, y down),
    NaN where unknown or out of view. The sim records it with every frame; real robot data lacks it."""
    return f"{GROUNDING_PREFIX}{camera}.xy"


def is_signal_key(name: str) -> bool:
    """Whether `name` is a training-only signal column (see GROUNDING_PREFIX)."""
    return name.startswith(GROUNDING_PREFIX) and name.endswith(".xy") and len(name) > len(GROUNDING_PREFIX) + 3


def image_key(camera: str) -> str:
    """The batch/feature key of a camera: "front" -> "observation.images.front"."""
    return OBS_IMAGES_PREFIX + camera
