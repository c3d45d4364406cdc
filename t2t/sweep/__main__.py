"""python -m t2t.sweep --grid experiments/NAME.py --workdir DIR [--scale paper|tiny]
    [--backend local|tpu-vm] [--parallel N] [--only PATTERN[,PATTERN]] [--dry-run]
    [--data_dir D] [--vocab SPM] [--tpu NAME --zone Z ...]   |   python -m t2t.sweep --workdir DIR --status

Runs every point of a grid (pretrain -> fine-tune -> evaluate) in DIR/<point>/ (layout in
t2t/sweep/launch.py). Re-running the same command skips finished stages and resumes the
others from their checkpoints; a failed point is recorded and the others go on.
--backend tpu-vm --tpu NAME --zone Z runs each stage through `gcloud compute tpus tpu-vm ssh
NAME --zone Z --worker=... --command ...` (training on every worker, evaluation on worker 0)
with paths as the VM sees them.
--dry-run prints the exact commands and runs nothing. Exit status: 0 when every selected
point is done, 1 when one failed or was interrupted.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys

from t2t.sweep import grid as grid_lib
from t2t.sweep import launch, status


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m t2t.sweep", description=__doc__.split("\n\n")[1])
    p.add_argument("--grid", help="grid file defining GRID (experiments/*.py)")
    p.add_argument("--workdir", required=True, help="sweep folder: one subfolder per point")
    p.add_argument("--scale", default="paper", help="scale of the grid: paper (default) or tiny")
    p.add_argument("--backend", default="local", choices=("local", "tpu-vm"))
    p.add_argument("--parallel", type=int, default=1, help="points run at once (default 1)")
    p.add_argument("--only", default="", help="comma-separated glob patterns of point names")
    p.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    p.add_argument("--status", action="store_true", help="show each point's state and exit")
    p.add_argument("--data_dir", default=None, help="folder with c4/, glue/, superglue/ "
                   "(default $T2T_DATA_DIR for --backend local)")
    p.add_argument("--vocab", default=None, help="SentencePiece model (default: "
                   "<data_dir>/vocab/t5_cc_all.32000/spiece.model when present)")
    p.add_argument("--python", default=sys.executable, help="interpreter of local stages "
                   "(default: this one)")
    p.add_argument("--jax_cache", default=None, help="persistent JAX compilation cache for local "
                   "stages (default $T2T_CACHE_DIR/jax or ~/.cache/t2t/jax; '' turns it off)")
    tpu = p.add_argument_group("tpu-vm backend")
    tpu.add_argument("--tpu", help="TPU VM name")
    tpu.add_argument("--zone", help="its zone, e.g. us-central2-b")
    tpu.add_argument("--project", help="GCP project (default: gcloud's)")
    tpu.add_argument("--remote_repo", help="t2t checkout on the VM (default: this repository's path)")
    tpu.add_argument("--remote_workdir", help="the sweep folder as the VM's workers see it, on storage "
                     "they and this machine share (default: --workdir)")
    tpu.add_argument("--remote_python", default="python3", help="Python on the VM (default python3)")
    args = p.parse_args(argv)
    if not args.status and not args.grid:
        p.error("--grid is required (or --status to show a sweep)")
    return args


def _default_jax_cache() -> str:
    return str(pathlib.Path(os.environ.get("T2T_CACHE_DIR", "~/.cache/t2t")).expanduser() / "jax")


def make_backend(args):
    if args.backend == "tpu-vm":
        return launch.TpuVmBackend(args.tpu, args.zone, project=args.project,
                                   repo=args.remote_repo, python=args.remote_python)
    cache = _default_jax_cache() if args.jax_cache is None else args.jax_cache
    return launch.LocalBackend(python=args.python, jax_cache=cache or None)


def plan(args, grid: grid_lib.Grid, workdir: pathlib.Path):
    """{point: stages} with paths as the machine running the stages sees them."""
    grid_path = pathlib.Path(args.grid)
    if args.backend == "tpu-vm":
        root = args.remote_workdir or str(workdir)
        grid_ref = launch.repo_relative(grid_path)
        data_dir, vocab = args.data_dir, args.vocab
    else:
        root, grid_ref = str(workdir), str(grid_path.resolve())
        data_dir = args.data_dir or os.environ.get("T2T_DATA_DIR") or None
        data_dir = str(pathlib.Path(data_dir).resolve()) if data_dir else None
        vocab = str(pathlib.Path(args.vocab).resolve()) if args.vocab else launch.default_vocab(data_dir)
    patterns = [s.strip() for s in args.only.split(",") if s.strip()]
    points = [p.name for p in grid.select(patterns)]
    return {p: launch.plan_point(grid, grid_ref, args.scale, p, root, data_dir=data_dir, vocab=vocab)
            for p in points}


def dry_run(plans, backend, workdir: pathlib.Path) -> None:
    print(backend.describe())
    for point, stages in plans.items():
        print(f"# point {point}")
        for stage in stages:
            done = launch.marker_path(workdir, point, stage.name).exists()
            print(("# done: " if done else "") + shlex.join(backend.argv(stage)))


def run(args) -> int:
    workdir = pathlib.Path(args.workdir).absolute()
    grid = grid_lib.load_grid(args.grid)
    grid.scale(args.scale)
    backend = make_backend(args)
    plans = plan(args, grid, workdir)
    if args.dry_run:
        dry_run(plans, backend, workdir)
        return 0
    launch.check_sweep_file(workdir, {
        "grid": str(pathlib.Path(args.grid).resolve()), "grid_name": grid.name, "scale": args.scale,
        "backend": backend.name, "points": [p.name for p in grid.points],
        "stages": grid.stages(args.scale)})
    for point, stages in plans.items():
        launch.write_json(workdir / point / "point.json", launch.point_summary(
            grid, args.scale, point, stages, [backend.argv(s) for s in stages]))
    print(f"sweep {grid.name} at scale {args.scale}: {len(plans)} point(s) in {workdir}", flush=True)
    runner = launch.Runner(workdir, plans, backend, parallel=args.parallel)
    outcome = runner.run(list(plans))
    sweep, points = status.sweep_status(workdir)
    print(status.format_status(sweep, [p for p in points if p.name in plans]))
    return 0 if all(v == "done" for v in outcome.values()) else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.status:
            print(status.format_status(*status.sweep_status(args.workdir)))
            return 0
        return run(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        raise SystemExit(f"t2t.sweep: {e.args[0] if isinstance(e, KeyError) and e.args else e}") from None


if __name__ == "__main__":
    sys.exit(main())
