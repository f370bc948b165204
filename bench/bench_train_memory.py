"""Training memory benchmark: peak memory and samples/s of `train(cfg)` at 150 and at 1,500 episodes, with the
decoded frames in the memory-mapped frame cache (vla_core.frame_cache). Writes bench/results/train_memory.json.

    python -m bench.bench_train_memory            # pick150 and 1,500 episodes, 300 steps each, cold + warm cache
    python -m bench.bench_train_memory --quick    # 3 demos copied to 30; 20 steps (a smoke check, ~3 minutes)

Data: `pick150` in VLA_DATA_DIR (default bench/out/data), recorded if missing exactly as bench.bench_vla records it
(50 scripted demos per colour from seeds 0 / 1000 / 2000). The 1,500 episodes are 10 copies of those 150, made
through the store's public API: each episode folder is copied under a new uid with its manifest's uid and dataset
rewritten and registered with EpisodeStore.register (the files and their checksums are unchanged, so a copy costs a
file copy, not a recording; its episode id differs, so the frame cache decodes and stores it separately, as it
would a genuinely new episode).

Each (size, cache state) runs in a fresh process that samples /proc/self/status every 20 ms: RssAnon (private
memory: what the frames cost before the cache, and what the OOM killer cannot reclaim) and RssFile (mapped cache
pages: page cache the kernel drops under pressure), and VmHWM (peak RSS, both together). "cold" starts from an
empty cache (every video decoded and written); "warm" maps the files the cold run wrote. `frames_in_ram_gb` is what
decoding every frame into RAM, as training did before the cache, would hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parent.parent
QUICK = {"dataset": "mem_quick", "demos": 1, "record_size": 96, "copies": 10, "steps": 20}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.bench_train_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data-dir", type=Path, help="default: VLA_DATA_DIR or bench/out/data (--quick: its own)")
    p.add_argument("--dataset", default="pick150")
    p.add_argument("--demos", type=int, default=50, help="demos per colour when the dataset must be recorded")
    p.add_argument("--record-size", type=int, help="camera size when recording it (default: the sim's 224)")
    p.add_argument("--copies", type=int, default=10, help="the large dataset is this many copies of the small one")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, help="torch threads (default: every core)")
    p.add_argument("--quick", action="store_true", help=f"tiny sizes: {QUICK}")
    p.add_argument("--child", help=argparse.SUPPRESS)  # dataset name: train once and print the measurements
    p.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.data_dir is None:
        default = REPO / ("bench/out/train_memory_quick" if args.quick else "bench/out/data")
        args.data_dir = default if args.quick else Path(os.environ.get("VLA_DATA_DIR", default))
    return args


# ----------------------------------------------------------------------------------------------- data
def copy_dataset(store, source: str, target: str, copies: int) -> int:
    """`target` = `copies` copies of every episode of `source` (made once; reused when complete). Returns its size."""
    from storage.episode_meta import EPISODES_DIR, MANIFEST_FILE

    infos = store.list_episodes(source)
    want = copies * len(infos)
    have = len(store.list_episodes(target)) if any(d.name == target for d in store.list_datasets()) else 0
    if have == want:
        return have
    if have:
        raise SystemExit(f"{target} holds {have} episodes, not {want}: delete it (or pick other --copies)")
    t = time.perf_counter()
    for _ in range(copies):
        for info in infos:
            uid = uuid.uuid4().hex
            rel = f"{EPISODES_DIR}/{target}/{uid}"
            folder = store.data_dir / rel
            shutil.copytree(store.data_dir / info.path, folder, ignore=shutil.ignore_patterns(MANIFEST_FILE))
            manifest = json.loads((store.data_dir / info.path / MANIFEST_FILE).read_text(encoding="utf-8"))
            manifest.update(uid=uid, dataset=target)
            (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
            store.register(manifest, rel)
    print(f"copied {len(infos)} episodes x {copies} into {target} in {time.perf_counter() - t:.0f} s", flush=True)
    return want


# ----------------------------------------------------------------------------------------------- one run (child)
class MemorySampler(threading.Thread):
    """Peaks of RssAnon / RssFile / VmRSS (bytes) of this process, read every `period` seconds."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.period, self.peak, self._done = period, dict.fromkeys(self.FIELDS, 0), threading.Event()

    @staticmethod
    def read() -> dict[str, int]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in MemorySampler.FIELDS or key == "VmHWM":
                out[key] = int(rest.split()[0]) * 1024
        return out

    def run(self) -> None:
        while not self._done.wait(self.period):
            for k, v in self.read().items():
                if k in self.peak:
                    self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return {**self.peak, "VmHWM": self.read()["VmHWM"]}


def child(args) -> dict:
    import numpy as np
    import torch

    from backend.sim.paraphrases import paraphrase_table
    from bench.bench_vla import open_store
    from vla_core import data as vdata
    from vla_core.train import TrainConfig, train

    sampler = MemorySampler()
    sampler.start()
    store = open_store(args.data_dir)
    out_dir = REPO / "bench/out/train_memory_model" / args.child
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = TrainConfig(
        dataset=args.child, out_dir=out_dir, steps=args.steps, batch_size=args.batch_size, checkpoint_every=0,
        val_every=args.steps, cache_dir=args.cache_dir, num_threads=args.threads, progress=False, resume=False,
    )  # fmt: skip
    train(cfg, store=store, paraphrases=paraphrase_table())
    peaks = sampler.stop()
    meta = json.loads((out_dir / "training_metadata.json").read_text())
    # The data path alone: batches gathered (and augmented) out of the maps, no model, over every episode.
    pc = json.loads((out_dir / "config.json").read_text())
    cams, size = list(pc["cameras"]), int(pc["image_size"])
    infos = vdata.list_dataset_episodes(store, args.child)
    eps = vdata.load_episodes(store, infos, cameras=cams, image_size=size, cache_dir=args.cache_dir)
    ds = vdata.WindowDataset(eps, chunk_size=int(pc["chunk_size"]), cameras=cams)
    rng, gen, aug = np.random.default_rng(0), torch.Generator().manual_seed(0), vdata.Augmentation()
    t = time.perf_counter()
    for _ in range(50):
        ds.sample_batch(rng.integers(0, len(ds), args.batch_size), rng=rng, augmentation=aug, generator=gen)
    gather = 50 * args.batch_size / (time.perf_counter() - t)
    return {
        "episodes": len(infos),
        "frames": meta["frames"],
        "steps": meta["steps"],
        "load_time_s": meta["load_time_s"],
        "samples_per_s": meta["samples_per_s"],
        "data_only_samples_per_s": gather,
        "peak_rss_gb": peaks["VmHWM"] / 1e9,
        "peak_rss_anon_gb": peaks["RssAnon"] / 1e9,
        "peak_rss_file_gb": peaks["RssFile"] / 1e9,
        # What decoding every frame into RAM, as training did before the cache, would hold (uint8).
        "frames_in_ram_gb": len(ds) * len(cams) * 3 * size * size / 1e9,
        "image_size": size,
        "num_threads": meta["num_threads"],
    }


# ----------------------------------------------------------------------------------------------- main
def run_child(args, dataset: str, cache_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_train_memory", "--child", dataset, "--data-dir", str(args.data_dir),
           "--cache-dir", str(cache_dir), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{dataset}: the training run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    from bench.bench_vla import ensure_dataset, open_store
    from bench.machine import write_result

    store = open_store(args.data_dir)
    ensure_dataset(store, args.dataset, args.demos, args.record_size)
    large = f"{args.dataset}_x{args.copies}"
    copy_dataset(store, args.dataset, large, args.copies)
    cache = args.data_dir.parent / f"{args.data_dir.name}_train_memory_cache"
    runs = []
    for dataset in (args.dataset, large):
        shutil.rmtree(cache, ignore_errors=True)
        for state in ("cold", "warm"):
            r = {"dataset": dataset, "cache": state, **run_child(args, dataset, cache)}
            r["cache_on_disk_gb"] = sum(p.stat().st_size for p in cache.glob("*.npy")) / 1e9
            runs.append(r)
            print(
                f"{dataset:>14} {state}: {r['episodes']} episodes, load {r['load_time_s']:.0f} s, "
                f"{r['samples_per_s']:.0f} samples/s (data path {r['data_only_samples_per_s']:.0f}), peak RSS "
                f"{r['peak_rss_gb']:.2f} GB = anon {r['peak_rss_anon_gb']:.2f} + mapped {r['peak_rss_file_gb']:.2f}; "
                f"in RAM the frames would be {r['frames_in_ram_gb']:.2f} GB, cache {r['cache_on_disk_gb']:.2f} GB",
                flush=True,
            )
    result = {"steps": args.steps, "batch_size": args.batch_size, "copies": args.copies, "runs": runs}
    if args.quick:
        path = args.data_dir / "train_memory_quick.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
    else:
        path = write_result("train_memory", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
