#!/usr/bin/env python
"""VLA Dashboard command line: builds the one Settings object and wires storage, backend and the web app.

    python run.py serve                     # the dashboard at http://VLA_HOST:VLA_PORT/ (API docs at /docs)
    python run.py demos --task pick --colour red --episodes 10 --dataset pick_red
    python run.py export pick_red --format lerobot-v3 --out exports/pick_red
    python run.py snapshot pick_red-v1 --dataset pick_red --success success --user alice
    python run.py export --snapshot pick_red-v1 --out exports/pick_red-v1
    python run.py recompute-quality
    python run.py import exports/pick_red --dataset pick_red_copy
    python run.py check-store
    python run.py train --dataset pick150 --out models/pick150 --minutes 15
    python run.py eval --model models/pick150 --task pick --colour red --episodes 20 --seed-base 100000
    python run.py users add alice --role operator     # asks for a password (or --password-stdin, or prints one)
    python run.py users list | disable NAME | enable NAME | reset-password NAME
    python run.py models import models/pick150 --name pick   # a save_pretrained folder or a downloaded .tar.gz
    python run.py models list [--name N] [--stage S] | promote ID | verify [ID]
    python run.py worker [--name N] [--threads N] [--once]   # runs queued jobs (serve starts one of its own)

Settings come from the environment (prefix VLA_, e.g. VLA_DATA_DIR, VLA_DATABASE_URL); see backend/settings.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.settings import Settings

EXIT_BAD_INPUT = 2
EXIT_STORE_PROBLEMS = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demos = commands.add_parser("demos", help="record scripted-expert demonstrations in the simulator")
    demos.add_argument("--task", required=True, help="registered task name (e.g. pick, place)")
    demos.add_argument("--colour", "--color", required=True, help="cube colour (red, green, blue)")
    demos.add_argument("--episodes", type=int, required=True, help="number of episodes to record")
    demos.add_argument("--dataset", required=True, help="dataset name (letters, digits, _ . -)")
    demos.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed+i (default 0)")
    demos.add_argument("--operator", default="scripted-expert", help="operator name stored with each episode")
    demos.add_argument("--noise", type=float, default=None, metavar="METRES",
                       help="DART noise: std of a slowly varying offset added to the expert's goal while the clean "
                       "action is recorded (default 0.015, as the VLA benchmark; 0: plain demos)")  # fmt: skip

    export = commands.add_parser("export", help="export a dataset or a snapshot (LeRobot v3.0)")
    export.add_argument("dataset", nargs="?", help="dataset name in the store")
    export.add_argument("--snapshot", help="export this snapshot (its frozen annotations) instead of a dataset")
    export.add_argument("--format", default="lerobot-v3", choices=["lerobot-v3"], help="export format")
    export.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")

    imp = commands.add_parser("import", help="import a LeRobot v3.0 folder into the store")
    imp.add_argument("folder", type=Path, help="LeRobot v3.0 dataset folder")
    imp.add_argument("--dataset", required=True, help="name of the dataset to import into")

    commands.add_parser("check-store", help="verify every episode's files and checksums; exit 1 on any problem")

    snap = commands.add_parser("snapshot", help="freeze a dataset's live episodes and annotations (immutable)")
    snap.add_argument("name", help="snapshot name (letters, digits, _ . -)")
    snap.add_argument("--dataset", required=True, help="dataset name in the store")
    snap.add_argument("--success", choices=["success", "failure", "unlabeled"], help="only episodes with this label")
    snap.add_argument("--user", default=os.environ.get("USER") or "cli", help="who takes it (default $USER)")
    snap.add_argument("--description", default="")

    commands.add_parser("recompute-quality", help="recompute every episode's quality flags with the current rules")

    train = commands.add_parser("train", help="train the policy on a dataset by behavioural cloning")
    train.add_argument("--dataset", required=True, help="dataset name in the store")
    train.add_argument("--out", required=True, type=Path, help="output folder (model, checkpoints, metrics.jsonl)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_positive_float, help="wall-clock training budget (stops and saves)")
    budget.add_argument("--steps", type=_positive_int, help="optimizer steps (default 2000)")
    train.add_argument("--policy", default="vla_tiny", help="registered policy name (default vla_tiny)")
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--lr", type=_positive_float, default=3e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--image-size", type=_positive_int, help="policy image size (default: the policy's)")
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (0: end only)")
    train.add_argument("--no-resume", action="store_true", help="fail instead of resuming from out/checkpoints")
    train.add_argument("--log-every", type=_positive_int, default=20, help="steps between metrics.jsonl records")
    train.add_argument("--threads", type=_positive_int, help="torch threads per process (default: cores/processes)")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: a GPU when present")
    train.add_argument(
        "--nproc-per-node", type=_positive_int, default=1, help="DDP: re-launch as N processes under torchrun"
    )
    train.add_argument(
        "--select-episodes", type=_positive_int, default=10,
        help="sim rollouts per colour on validation seeds for each candidate checkpoint (default 10)",
    )  # fmt: skip
    train.add_argument(
        "--no-select", action="store_true", help="hand over the final weights (no checkpoint selection rollouts)"
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="policy config override (JSON value)"
    )

    ev = commands.add_parser("eval", help="closed-loop rollouts of a trained policy in the sim")
    ev.add_argument("--model", required=True, type=Path, help="trained model folder (from `train`)")
    ev.add_argument("--task", default="pick", help="registered task name")
    ev.add_argument("--colour", "--color", default="red", help="cube colour (red, green, blue)")
    ev.add_argument("--episodes", type=_positive_int, default=10)
    ev.add_argument("--seed-base", type=int, default=100_000, help="episode i uses seed seed-base + i")
    ev.add_argument("--max-steps", type=_positive_int, help="steps per episode (default: the sim's 300)")
    ev.add_argument("--image-size", type=_positive_int, help="render size (default: the policy's image size)")
    ev.add_argument("--paraphrase", action="store_true", help="a random instruction template per episode")
    ev.add_argument("--video-dir", type=Path, help="write one MP4 per episode with attention overlays")
    ev.add_argument("--json-out", type=Path, help="also write the JSON report to this file")

    users = commands.add_parser("users", help="add, list, disable, enable users and reset their passwords")
    user_commands = users.add_subparsers(dest="users_command", metavar="USERS_COMMAND", required=True)
    add = user_commands.add_parser("add", help="add a user (password: --password-stdin, a prompt, or generated)")
    add.add_argument("name", help="user name (letters, digits, _ . -)")
    add.add_argument("--role", required=True, choices=["operator", "engineer", "manager", "admin"])
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")
    user_commands.add_parser("list", help="every user with role, state and last sign-in")
    for name, text in (("disable", "lock a user out; their sessions end at once"), ("enable", "let a user in again")):
        user_commands.add_parser(name, help=text).add_argument("name")
    reset = user_commands.add_parser("reset-password", help="set a new password; the user's sessions end at once")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")

    models = commands.add_parser("models", help="list, import, promote and verify registered models")
    model_commands = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND", required=True)
    listing = model_commands.add_parser("list", help="registered models, newest first")
    listing.add_argument("--name", help="only versions of this model name")
    listing.add_argument("--stage", choices=["candidate", "production", "archived"])
    register = model_commands.add_parser("import", help="register a save_pretrained folder or a model .tar.gz")
    register.add_argument("path", type=Path, help="the folder, or an archive from the Models page's download")
    register.add_argument("--name", required=True, help="model name (letters, digits, _ . -); the next version")
    register.add_argument("--notes", help="free text shown with the model")
    register.add_argument("--user", default=os.environ.get("USER") or "cli", help="who imports it (default $USER)")
    promote = model_commands.add_parser("promote", help="make a model its name's production model")
    promote.add_argument("id", type=_positive_int)
    verify = model_commands.add_parser("verify", help="check model files against their checksums; exit 1 if any fail")
    verify.add_argument("id", type=_positive_int, nargs="?", help="one model (default: every model)")

    report = commands.add_parser("report", help="the managers' weekly report as a PDF (the Metrics tab's numbers)")
    report.add_argument("--week", required=True, help="an ISO week, e.g. 2026-W48")
    report.add_argument("--out", type=Path, required=True, help="the PDF to write")
    report.add_argument("--task", help="only this task")
    report.add_argument("--model", help="only this model name")

    serve = commands.add_parser("serve", help="start the dashboard (web UI, REST API, teleop WebSocket) on the sim")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-worker", action="store_true", help="start no embedded job worker (`run.py worker` runs jobs elsewhere)"
    )

    worker = commands.add_parser("worker", help="run queued jobs (exports, training, evaluation) until stopped")
    worker.add_argument("--name", help="the name its jobs show (default host:pid)")
    worker.add_argument(
        "--threads", type=_positive_int, help="CPU threads a job may use (default VLA_WORKER_THREADS, else all but one)"
    )
    worker.add_argument("--once", action="store_true", help="run the queued jobs, then exit once none is left")
    worker.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # the embedded worker stops with serve
    return parser


def _positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc-per-node` re-launches
    settings = Settings()
    # MuJoCo reads MUJOCO_GL when it is first imported, so it is set before any backend.sim import.
    os.environ.setdefault("MUJOCO_GL", settings.mujoco_gl)

    from storage.errors import StoreError

    try:
        store = open_store(settings)
        return COMMANDS[args.command](args, settings, store)
    except (StoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def open_store(settings: Settings):
    """Migrate the database to head, open the episode store and clean up what a killed process left."""
    from storage.db import make_engine, make_session_factory, upgrade_database
    from storage.episode_store import EpisodeStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    store = EpisodeStore(settings.data_dir, make_session_factory(engine))
    report = store.recover()
    if report.changed:
        print(f"store: {report}", file=sys.stderr)
    return store


def cmd_demos(args, settings: Settings, store) -> int:
    from tqdm import tqdm

    from backend.services.demos import DEFAULT_DEMO_NOISE_M, check_demo_request, dart_noise, record_demos
    from backend.sim import SimConfig

    # Bad names fail here, before a progress bar or a single file exists.
    check_demo_request(dataset=args.dataset, task_name=args.task, colour=args.colour, episodes=args.episodes)
    noise = dart_noise(DEFAULT_DEMO_NOISE_M if args.noise is None else args.noise)
    successes = 0
    with tqdm(total=args.episodes, desc=f"{args.task} {args.colour}", unit="ep") as bar:

        def on_episode(result) -> None:
            nonlocal successes
            successes += result.success
            bar.update(1)
            bar.set_postfix(success=f"{successes}/{bar.n}")

        record_demos(
            store=store,
            dataset=args.dataset,
            task_name=args.task,
            colour=args.colour,
            episodes=args.episodes,
            seed=args.seed,
            sim_config=SimConfig(image_size=settings.image_size, control_hz=settings.control_hz),
            operator=args.operator,
            on_episode=on_episode,
            noise=noise,
        )
    print(f"recorded {args.episodes} episodes into '{args.dataset}' ({successes} successful)")
    return 0


def cmd_export(args, settings: Settings, store) -> int:
    from storage.lerobot_v3 import export_dataset, export_episodes
    from storage.snapshots import SnapshotService

    if (args.dataset is None) == (args.snapshot is None):
        raise ValueError("name a dataset or give --snapshot NAME (exactly one)")
    what = f"snapshot '{args.snapshot}'" if args.snapshot else f"'{args.dataset}'"
    with _progress_bar(f"export {args.snapshot or args.dataset}") as progress:
        if args.snapshot:
            infos = SnapshotService(store.session_factory, store).episodes(args.snapshot)
            export_episodes(store, infos, args.out, label=f"snapshot {args.snapshot}", progress=progress)
        else:
            export_dataset(store, args.dataset, args.out, progress=progress)
    print(f"exported {what} to {args.out} (LeRobot v3.0)")
    return 0


def cmd_snapshot(args, settings: Settings, store) -> int:
    from storage.episode_query import EpisodeQuery, SuccessLabel
    from storage.snapshots import SnapshotService

    query = EpisodeQuery(success=SuccessLabel(args.success) if args.success else None)
    snap = SnapshotService(store.session_factory, store).create(
        args.name, args.dataset, user=args.user, description=args.description, query=query
    )
    print(f"snapshot '{snap.name}': {snap.num_episodes} episodes, {snap.num_frames} frames of '{snap.dataset}'")
    return 0


def cmd_recompute_quality(args, settings: Settings, store) -> int:
    count = store.recompute_quality()
    flagged = sum(1 for e in store.list_episodes(include_trashed=True) if e.quality_flags)
    print(f"recomputed the quality flags of {count} episodes; {flagged} carry at least one flag")
    return 0


def cmd_import(args, settings: Settings, store) -> int:
    from storage.lerobot_v3 import import_dataset

    with _progress_bar(f"import {args.folder.name}") as progress:
        episode_ids = import_dataset(store, args.folder, args.dataset, progress=progress)
    print(f"imported {len(episode_ids)} episodes into '{args.dataset}'")
    return 0


def cmd_check_store(args, settings: Settings, store) -> int:
    problems = store.check()
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(f"check-store: {len(problems)} problem(s) in {settings.data_dir}", file=sys.stderr)
        return EXIT_STORE_PROBLEMS
    count = len(store.list_episodes())
    print(f"check-store: ok ({count} episodes, every file present with a matching checksum, no orphans)")
    return 0


def _parse_overrides(items: list[str]) -> dict:
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(args, settings: Settings, store) -> int:
    from backend.sim.paraphrases import paraphrase_table as sim_paraphrases
    from backend.training import SelectionConfig, train_and_select
    from vla_core.distributed import env_rank
    from vla_core.train import TrainConfig

    overrides = _parse_overrides(args.set)
    if args.image_size:
        overrides["image_size"] = args.image_size
    cfg = TrainConfig(
        dataset=args.dataset,
        out_dir=args.out,
        policy=args.policy,
        policy_overrides=overrides,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        num_threads=args.threads,
        log_every=args.log_every,
        device=args.device,
    )
    if args.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        return _relaunch_under_torchrun(args, cfg, store)
    selection = SelectionConfig(enabled=not args.no_select, episodes=args.select_episodes)
    # --minutes covers training and the selection rollouts together (see backend/training.py).
    chosen = train_and_select(cfg, store=store, selection=selection, paraphrases=sim_paraphrases())
    if env_rank()[0] != 0:
        return 0  # rank 0 reports for the run
    ref, t = chosen.training, chosen.timings
    m = ref.metrics
    val = f"{m['final_val_loss']:.4f}" if m["final_val_loss"] is not None else "n/a"
    print(
        f"trained {ref.step} steps in {m['wall_time_s'] / 60:.1f} min (stopped by {m['stopped_by']}): "
        f"loss {m['final_loss']:.4f}, val loss {val}"
    )
    for c in chosen.scores:
        score = f"{c['successes']}/{c['episodes']} on validation seeds" if c.get("success") is not None else "-"
        loss = f"{c['val_loss']:.4f}" if c["val_loss"] is not None else "n/a"
        print(f"  {c['checkpoint']} ({c['elapsed_s'] / 60:.1f} min): {score}, val loss {loss}")
    why = f" ({chosen.reason})" if chosen.reason else ""
    print(
        f"model: step {chosen.step} by {chosen.rule}{why}, saved to {chosen.path}; "
        f"{t['total_s'] / 60:.1f} min in all, selection {(t['selection_s'] or 0) / 60:.1f} min"
    )
    return 0


def _relaunch_under_torchrun(args, cfg, store) -> int:
    """Run this same command as `--nproc-per-node` DDP ranks (torch.distributed.run), so no one types torchrun.

    The dataset is checked here first: bad input is one clear message, not one per rank inside torchrun's report.
    """
    import subprocess

    from vla_core.data import list_dataset_episodes
    from vla_core.distributed import torchrun_command

    list_dataset_episodes(store, cfg.dataset, only_successful=cfg.only_successful)
    return subprocess.call(torchrun_command(args.nproc_per_node, [str(Path(__file__).resolve()), *args.argv]))


def cmd_eval(args, settings: Settings, store) -> int:
    import json

    from backend.services.evaluation import EvalConfig, evaluate_policy, write_report
    from vla_core.policies import load_policy

    cfg = EvalConfig(
        task=args.task,
        colour=args.colour,
        episodes=args.episodes,
        seed_base=args.seed_base,
        max_steps=args.max_steps,
        image_size=args.image_size,
        paraphrase=args.paraphrase,
        video_dir=args.video_dir,
    )
    cfg.validate()  # bad task/colour fail before the model loads
    policy = load_policy(args.model)

    def on_episode(r) -> None:
        print(f"seed {r.seed}: {'success' if r.success else 'failure'} in {r.steps} steps", file=sys.stderr)

    report = evaluate_policy(policy, cfg, on_episode=on_episode, model_dir=args.model)
    low, high = report["wilson_95"]
    print(
        f"{args.task} {args.colour}: {report['successes']}/{report['episodes']} = {report['success_rate']:.0%} "
        f"(95% CI {low:.0%}-{high:.0%})",
        file=sys.stderr,
    )
    if args.json_out:
        write_report(report, args.json_out)
    print(json.dumps(report, indent=2, default=float))
    return 0


def _new_password(args) -> tuple[str, bool]:
    """(password, generated): from stdin with --password-stdin, else a prompt on a terminal, else a random one."""
    import getpass

    from backend.services.auth import generate_password

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the two passwords differ; nothing was changed")
        return password, False
    return generate_password(), True


def cmd_users(args, settings: Settings, store) -> int:
    from backend.services.audit import AuditService
    from backend.services.auth import UserService

    users = UserService(store.session_factory, AuditService(store.session_factory))
    who = {"actor": None, "address": "cli"}  # the audit log's "from where" for the server's console
    if args.users_command == "list":
        print(f"{'name':20} {'role':9} {'state':8} {'password':8} {'created':20} last sign-in")
        for u in users.list():
            last = u.last_sign_in_at.strftime("%Y-%m-%d %H:%M:%S") if u.last_sign_in_at else "never"
            state, has_password = "active" if u.active else "disabled", "yes" if u.has_password else "no"
            created = u.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{u.name:20} {u.role.value:9} {state:8} {has_password:8} {created:20} {last}")
        return 0
    if args.users_command == "disable":
        users.disable(args.name, **who)
        print(f"user '{args.name}' disabled: signed out everywhere, API tokens refused")
        return 0
    if args.users_command == "enable":
        users.enable(args.name, **who)
        print(f"user '{args.name}' enabled")
        return 0
    password, generated = _new_password(args)
    if args.users_command == "add":
        user = users.add(args.name, args.role, password, **who)
        print(f"added {user.role.value} '{user.name}'")
    else:
        users.reset_password(args.name, password, **who)
        print(f"new password set for '{args.name}': signed out everywhere")
    if generated:
        print(f"password: {password}  (shown once; `run.py users reset-password {args.name}` sets another)")
    return 0


def cmd_models(args, settings: Settings, store) -> int:
    from backend.services.models import ModelIntegrityError, ModelRegistry

    registry = ModelRegistry(store.session_factory, settings.models_dir)
    who = {"actor": None, "address": "cli"}  # as `users`: the audit log's "from where" for the server's console
    if args.models_command == "list":
        print(f"{'id':>5} {'name':24} {'version':>7} {'stage':10} {'policy':10} {'val loss':>8} {'success':>8} created")
        for m in registry.list(name=args.name, stage=args.stage):
            val = m.metrics.get("val_loss")
            rate = (m.metrics.get("closed_loop") or {}).get("success_rate")
            val_text, rate_text = f"{val:.4f}" if val is not None else "-", f"{rate:.0%}" if rate is not None else "-"
            created = f"{m.created_at:%Y-%m-%d %H:%M} by {m.created_by or '-'}"
            print(
                f"{m.id:>5} {m.name:24} {m.version:>7} {m.stage.value:10} {m.policy_type:10} {val_text:>8} "
                f"{rate_text:>8} {created}"
            )
        return 0
    if args.models_command == "import":
        add = registry.import_folder if args.path.is_dir() else registry.import_archive
        info = add(args.path, name=args.name, created_by=args.user, notes=args.notes, address="cli")
        print(f"registered {info.label} from {args.path} in {info.path}")
        return 0
    try:
        if args.models_command == "promote":
            info = registry.promote(args.id, **who)
            print(f"{info.label} is the production {info.name!r} model")
            return 0
        ids = [args.id] if args.id is not None else [m.id for m in reversed(registry.list())]
        damaged = 0
        for model_id in ids:
            problems = registry.verify(model_id)
            damaged += bool(problems)
            print(f"{registry.get(model_id).label}: {'; '.join(problems) if problems else 'ok'}")
        return EXIT_STORE_PROBLEMS if damaged else 0
    except ModelIntegrityError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORE_PROBLEMS


def cmd_worker(args, settings: Settings, store) -> int:
    """Claim and run jobs from the database (SQLite here, or the PostgreSQL several machines share) until SIGTERM
    or SIGINT, which hands the running job back to the queue (it resumes on the next worker)."""
    import logging
    import socket

    from backend.jobs import JobQueue, Worker, known_kinds, load_plugins

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    load_plugins(settings.job_plugins)
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    queue = JobQueue(store.session_factory, data_dir=settings.data_dir)
    worker = Worker(queue, settings, store, name, threads=args.threads, parent_pid=args.parent_pid)
    worker.install_signal_handlers()
    # The training stack (torch, transformers, the sim) is imported now, not when a job starts: seconds off the time
    # from launching a training or evaluation job to its first step.
    import backend.services.evaluation  # noqa: F401
    import backend.training  # noqa: F401

    _clean_leftovers(settings, store)

    kinds = ", ".join(known_kinds())
    print(f"worker {name}: {worker.threads} thread(s) per job, kinds: {kinds}", file=sys.stderr, flush=True)
    try:
        ran = worker.run(once=args.once)
    except KeyboardInterrupt:  # a second signal: the job was handed back all the same
        return 130
    print(f"worker {name}: stopped after {ran} job(s)", file=sys.stderr, flush=True)
    return 0


def _clean_leftovers(settings: Settings, store) -> None:
    """What killed processes left: frame-cache files no episode uses (purged, rewritten videos) and stale staging
    copies of model registrations. Never fatal: a worker that cannot tidy up still runs jobs."""
    from backend.services.models import ModelRegistry
    from vla_core.data import prune_frame_cache

    try:
        frames = prune_frame_cache(store)
        staged = ModelRegistry(store.session_factory, settings.models_dir).clean_staging()
    except OSError as error:
        print(f"worker: could not clean up leftovers: {error}", file=sys.stderr, flush=True)
        return
    if frames or staged:
        print(f"worker: removed {len(frames)} unused frame-cache file(s), {len(staged)} stale model staging "
              "folder(s)", file=sys.stderr, flush=True)  # fmt: skip


def _start_embedded_worker():
    """`run.py worker` as a child process, so jobs never run in the web server's process. Its own session, so a
    Ctrl-C meant for the server does not reach it: when the server stops (or dies), the worker finishes the job it
    is running and then exits (Worker.drain), so a server restart leaves a running job running."""
    import socket
    import subprocess

    name = f"{socket.gethostname()}:embedded-{os.getpid()}"
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "worker", "--name", name, "--parent-pid", str(os.getpid())]
    return subprocess.Popen(command, start_new_session=True)


def _drain_embedded_worker(proc, idle_exit_s: float = 3.0) -> None:
    """SIGUSR1: an idle worker exits at once; a busy one finishes its job first (say so, and how to stop it)."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGUSR1)
    try:
        proc.wait(idle_exit_s)
    except subprocess.TimeoutExpired:
        print(
            f"the job worker (pid {proc.pid}) finishes its running job, then exits; `kill {proc.pid}` hands the job "
            "back to the queue instead (the next worker resumes it from its last checkpoint)",
            file=sys.stderr,
            flush=True,
        )


def cmd_serve(args, settings: Settings, store) -> int:
    """One FastAPI app around the sim robot: Gradio UI at /, REST under /api, docs at /docs, /ws/teleop, browser
    code at /client; and one embedded job worker beside it (not with --no-worker)."""
    import uvicorn

    from webapp import create_app

    robot = None
    if settings.robot_process:  # the loop, deadman, recorder and policy beside the web server (backend.runtime)
        from backend.runtime import RobotRuntime

        session = RobotRuntime(settings)
    else:
        from backend.control import RobotSession
        from backend.sim import SimConfig, SimRobot

        robot = SimRobot(SimConfig(image_size=settings.image_size, control_hz=settings.control_hz))
        session = RobotSession(robot, store, control_hz=settings.control_hz)
    app = create_app(settings, session=session, store=store)  # its lifespan starts and stops the control loop
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"VLA Dashboard: http://{host}:{settings.port}/  (API docs: /docs, data: {settings.data_dir})", flush=True)
    if not _is_loopback(settings.host):
        print(_exposed_warning(settings), file=sys.stderr, flush=True)
    link = app.state.auth.users.ensure_admin()  # first start (no users): `admin` and a one-time sign-in link
    if link is not None:
        minutes = round(settings.sign_in_link_ttl_s / 60)
        url = f"http://{_url_host(host)}:{settings.port}/signin/link?token={link.secret}"
        print(f"Sign in as {link.user} (one-time link, valid {minutes} min): {url}", file=sys.stderr, flush=True)
    worker = None if args.no_worker else _start_embedded_worker()
    try:
        # Messages above 1 MiB close the socket; /ws/teleop itself rejects anything above 4 KiB with an error reply.
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, ws_max_size=2**20)
    finally:
        if worker is not None:
            _drain_embedded_worker(worker)
        if robot is not None:
            robot.close()
    return 0


def _url_host(host: str) -> str:
    """A host as it goes in a URL: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host.lower() == "localhost"


def _exposed_warning(settings: Settings) -> str:
    """What binding beyond loopback means: plain HTTP (no TLS) to whoever reaches the address."""
    address = f"{settings.host}:{settings.port}"
    where = f"every network interface ({address})" if settings.host in ("0.0.0.0", "::") else address
    return (
        f"WARNING: listening on {where} over plain HTTP, without TLS: anyone who"
        " can reach this address can watch the cameras and drive the robot, and traffic can be read on the way."
        " Bind to 127.0.0.1 and serve through a TLS reverse proxy instead (README, 'Running behind a TLS proxy')."
        " Host names other than loopback and VLA_HOST are refused unless listed in VLA_ALLOWED_HOSTS."
    )


class _progress_bar:
    """A tqdm bar fed by a `progress(done, total)` callback, as export/import report it."""

    def __init__(self, description: str):
        from tqdm import tqdm

        self._bar = tqdm(desc=description, unit="ep")

    def __enter__(self):
        def progress(done: int, total: int) -> None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

        return progress

    def __exit__(self, *exc) -> None:
        self._bar.close()


def cmd_report(args, settings: Settings, store) -> int:
    from backend.services.metrics import MetricsService
    from backend.services.metrics_report import render_weekly_report, week_range

    week_range(args.week)  # a bad week fails before anything is written
    if not args.out.parent.is_dir():
        raise ValueError(f"the folder of {args.out} does not exist")
    summary = render_weekly_report(MetricsService(store.session_factory), args.week, args.out, task=args.task,
                                   model_name=args.model)  # fmt: skip
    print(f"wrote {args.out}: {summary['rollouts']} rollouts, {summary['demos']} demos, {summary['jobs']} jobs")
    return 0


COMMANDS = {
    "demos": cmd_demos,
    "export": cmd_export,
    "import": cmd_import,
    "check-store": cmd_check_store,
    "snapshot": cmd_snapshot,
    "recompute-quality": cmd_recompute_quality,
    "serve": cmd_serve,
    "train": cmd_train,
    "eval": cmd_eval,
    "users": cmd_users,
    "models": cmd_models,
    "worker": cmd_worker,
    "report": cmd_report,
}

if __name__ == "__main__":
    sys.exit(main())
