"""One rank of a training job that asked for `nproc_per_node` > 1: the worker's training handler runs

    python -m torch.distributed.run --standalone --nproc-per-node=N -m backend.jobs.train_ranks <job folder>

and every rank calls the same train_and_select as a single-process job (vla_core.train joins torchrun's process
group, shards the data, and lets rank 0 alone write checkpoints, metrics and the selected model). The rank reads
what to do from `<job folder>/ranks.json`, written by the handler: the job's config, the CPU threads per rank, and
where the data and the database are (the worker's Settings). To stop them (a cancel, a worker shutting down) the
handler creates `<job folder>/ranks.stop`: rank 0 polls it every step and train() stops every rank at the same
step, with a checkpoint. Registering the model is the handler's, once the ranks have ended.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RANKS_FILE = "ranks.json"
STOP_FILE = "ranks.stop"  # the handler creates it to stop the ranks (rank 0 polls it; train() broadcasts the stop)


def main(argv: list[str]) -> int:
    from backend.jobs.train import select_model
    from backend.settings import Settings
    from storage.db import make_engine, make_session_factory
    from storage.episode_store import EpisodeStore

    job_dir = Path(argv[0])
    spec = json.loads((job_dir / RANKS_FILE).read_text())
    settings = Settings(data_dir=Path(spec["data_dir"]), database_url=spec["database_url"],
                        models_dir=Path(spec["models_dir"]))  # fmt: skip
    store = EpisodeStore(settings.data_dir, make_session_factory(make_engine(settings.database_url)))
    select_model(spec["config"], job_dir=job_dir, store=store, settings=settings, threads=int(spec["threads"]),
                 should_stop=(job_dir / STOP_FILE).exists)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
