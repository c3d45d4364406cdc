"""`python -m t2t.sweep --workdir DIR --status`: each point's state, stage, step and metric.

States: done (every stage finished), running (a live process of this host runs it),
failed (with the error), interrupted (stopped by a signal or a dead sweep; re-run to resume)
and pending (nothing finished yet).
"""
from __future__ import annotations

import dataclasses
import pathlib

from t2t import fileio
from t2t import workdir as layout
from t2t.sweep import launch


@dataclasses.dataclass
class PointStatus:
    name: str
    state: str
    stage: str = ""              # the running / failed / next stage
    stages_done: int = 0
    stages_total: int = 0
    step: int | None = None      # latest logged step of that stage's run
    metric: str = ""             # e.g. "loss=8.054" or "glue_rte/accuracy=56.25"
    error: str = ""              # failed: the log's last lines


def latest_eval(run_dir: pathlib.Path) -> tuple[str, dict[str, dict]] | None:
    """(label, {file stem: eval JSON}) of eval/best/, else of the highest eval/<step>/."""
    folders = [p for p in layout.eval_root(run_dir).glob("*") if p.is_dir() and any(p.glob("*.json"))]
    if not folders:
        return None
    folder = max(folders, key=lambda p: (p.name == layout.BEST, int(p.name) if p.name.isdigit() else -1,
                                         p.stat().st_mtime))
    files = {f.name[:-len(".json")]: fileio.read_json(f) for f in sorted(folder.glob("*.json"))}
    return folder.name, {k: v for k, v in files.items() if v and "metrics" in v}


def _train_progress(run_dir: pathlib.Path) -> tuple[int | None, str]:
    records = [r for r in layout.read_metrics(run_dir, skip_malformed=True) if r.get("split") == "train"]
    if not records:
        return None, ""
    last = records[-1]
    return last.get("step"), f"loss={last['loss']:.4g}" if "loss" in last else ""


def _eval_summary(run_dir: pathlib.Path) -> str:
    found = latest_eval(run_dir)
    if not found:
        return ""
    parts = []
    for name, data in found[1].items():
        for metric, value in data["metrics"].items():
            parts.append(f"{name}/{metric}={value:.4g}")
    return " ".join(parts)


def point_status(workdir: pathlib.Path, name: str, stage_names: list[str]) -> PointStatus:
    """The state of one point from its status.json, stage markers and run folders."""
    point_dir = workdir / name
    done = [s for s in stage_names if launch.marker_path(workdir, name, s).exists()]
    status = fileio.read_json(point_dir / "status.json") or {}
    info = fileio.read_json(point_dir / "point.json") or {}
    state = status.get("state", "pending")
    nxt = next((s for s in stage_names if s not in done), "")
    if len(done) == len(stage_names) and stage_names:
        state = "done"
    elif state == "running" and not launch.pid_alive(status.get("pid"), status.get("host")):
        state = "interrupted"
    elif state == "done" or (state == "pending" and done):
        state = "interrupted"   # stages were added or markers removed since
    out = PointStatus(name, state, status.get("stage", nxt) if state != "done" else "",
                      len(done), len(stage_names), error=status.get("error", "") if state == "failed" else "")
    stage = out.stage or (stage_names[-1] if stage_names else "")
    run_dir = workdir / info.get("stages", {}).get(stage, {}).get("run_dir", f"{name}/pretrain")
    if stage.startswith("evaluate") or state == "done":
        out.metric = _eval_summary(run_dir)
    out.step, train_metric = _train_progress(run_dir)
    out.metric = out.metric or train_metric
    return out


def sweep_status(workdir) -> tuple[dict, list[PointStatus]]:
    """(sweep.json, the status of every point of the sweep in grid order)."""
    workdir = pathlib.Path(workdir)
    sweep = fileio.read_json(workdir / "sweep.json")
    if sweep is None:
        raise FileNotFoundError(f"{workdir / 'sweep.json'} not found: --workdir must be a folder "
                                "that `python -m t2t.sweep --grid ...` has run in")
    return sweep, [point_status(workdir, p, sweep["stages"]) for p in sweep["points"]]


def format_status(sweep: dict, points: list[PointStatus]) -> str:
    counts = {}
    for p in points:
        counts[p.state] = counts.get(p.state, 0) + 1
    head = (f"sweep {sweep['grid_name']} ({sweep['grid']}) at scale {sweep['scale']}, backend "
            f"{sweep['backend']}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    rows = [("point", "state", "stages", "stage", "step", "metric")]
    for p in points:
        rows.append((p.name, p.state, f"{p.stages_done}/{p.stages_total}", p.stage,
                     "" if p.step is None else str(p.step), p.metric))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]
                      for r in rows]
    for p in points:
        if p.error:
            lines.append(f"\n{p.name} failed in {p.stage}:\n" + "\n".join(
                "    " + line for line in p.error.splitlines()))
    return "\n".join(line.rstrip() for line in lines)
