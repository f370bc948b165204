"""The instruction paraphrases training samples from: every template of the same sim task and colour."""

from __future__ import annotations

from backend.sim.tasks import COLOURS, list_tasks, make_task
from vla_core.train import build_paraphrase_table


def paraphrase_table() -> dict[str, list[str]]:
    """{instruction: [every template of the same task and colour]} from the sim's registered tasks."""
    return build_paraphrase_table(
        {
            (name, colour): [t.format(colour=colour) for t in make_task(name, colour).instruction_templates]
            for name in list_tasks()
            for colour in COLOURS
        }
    )
