"""Named evaluation suites: fixed task x colour x seed lists (and instructions), so model versions are always
compared on the same episodes. An evaluation job run with `suite=` rolls out exactly these; its rollouts are
stored with the suite's name (backend.services.rollout_log), which the metrics and the comparison group by.

- "held-out": the test seeds (100000+ red, 101000+ green, 102000+ blue; disjoint from training scenes and from the
  validation seeds checkpoint selection uses), the canonical instruction, 20 per colour.
- "paraphrases": the same scenes, each told with an instruction no training template uses (NEW_PARAPHRASES,
  cycled over the seeds), to check the policy follows the words rather than one memorised sentence.
- "colour-swap": the same 20 scenes (103000+) told each of the three colours in turn: does the policy go for the
  cube it is told about? (the wrong-object rate; issue 15 asks for <= 5%).
- "jitter": the held-out scenes with the lights and the materials' colours jittered (SimConfig light_jitter /
  colour_jitter), which no training demo had.
- "edge": new scenes (104000+) with the instructed cube in the outer 10% of the layout box, where the demos'
  cubes seldom were (SimConfig layout="edge").
- "mask-instructed" / "mask-other": the held-out scenes with the instructed cube, or another one, greyed out in
  every image the policy sees. A policy that uses the cube it is told about fails far more often without it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NEW_PARAPHRASES", "SUITES", "EvalSuite", "get_suite"]

TEST_SEEDS = {"red": 100_000, "green": 101_000, "blue": 102_000}
SWAP_SEED = 103_000  # colour-swap: one set of scenes for every colour (disjoint from the test and validation seeds)
EDGE_SEEDS = {"red": 104_000, "green": 105_000, "blue": 106_000}  # edge: scenes of their own

# Never among the sim tasks' instruction_templates (the training paraphrases): checked by the tests.
NEW_PARAPHRASES = (
    "could you lift the {colour} cube",
    "the {colour} cube, pick it up please",
    "get hold of the {colour} cube and raise it up",
    "I need the {colour} cube lifted",
)


@dataclass(frozen=True)
class EvalSuite:
    name: str
    description: str
    tasks: tuple[str, ...] = ("pick",)
    colours: tuple[str, ...] = ("red", "green", "blue")
    episodes: int = 20  # per task and colour
    seed_bases: tuple[tuple[str, int], ...] = tuple(TEST_SEEDS.items())
    instructions: tuple[str, ...] | None = None  # templates with {colour}, episode i takes i % len; None: canonical
    max_steps: int = 200
    light_jitter: bool = False  # SimConfig's appearance jitter, off in every training demo
    colour_jitter: bool = False
    layout: str = "uniform"  # SimConfig.layout: "edge" puts the instructed cube at the edge of the layout box
    mask_cube: str | None = None  # EvalConfig.mask_cube: "instructed" or "other" greyed out in what the policy sees

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "tasks": list(self.tasks),
                "colours": list(self.colours), "episodes": self.episodes, "seed_bases": dict(self.seed_bases),
                "instructions": list(self.instructions) if self.instructions else None,
                "max_steps": self.max_steps, "light_jitter": self.light_jitter, "colour_jitter": self.colour_jitter,
                "layout": self.layout, "mask_cube": self.mask_cube}  # fmt: skip


SUITES: dict[str, EvalSuite] = {
    s.name: s
    for s in (
        EvalSuite("held-out", "test seeds, canonical instruction, 20 rollouts per colour"),
        EvalSuite("paraphrases", "the held-out scenes told with instructions no training template uses",
                  instructions=NEW_PARAPHRASES),
        EvalSuite("colour-swap", "the same 20 scenes told each colour in turn (the wrong-object rate)",
                  seed_bases=tuple((c, SWAP_SEED) for c in TEST_SEEDS)),
        EvalSuite("jitter", "the held-out scenes with light and material colour jitter no demo had",
                  light_jitter=True, colour_jitter=True),
        EvalSuite("edge", "new scenes with the instructed cube at the edge of the layout box",
                  seed_bases=tuple(EDGE_SEEDS.items()), layout="edge"),
        EvalSuite("mask-instructed", "the held-out scenes with the instructed cube greyed out in every image",
                  mask_cube="instructed"),
        EvalSuite("mask-other", "the held-out scenes with another cube greyed out in every image",
                  mask_cube="other"),
    )  # fmt: skip
}


def get_suite(name: str) -> EvalSuite:
    """The suite called `name`; ValueError naming the known ones otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown evaluation suite {name!r}; suites: {', '.join(SUITES)}") from None
