"""A sweep's results as one pandas DataFrame, and as the T5 paper prints them.

`results_table(DIR)`: one row per point (grid order), columns

  model, pretrain task, params, FLOPs, pretrain loss, GLUE, SuperGLUE, <task>/<metric> ...

`params` is the exact parameter count, `FLOPs` the training FLOPs of one pretraining
example (t2t.models.variants.flops_per_token x target tokens, the cost T5's Table 2 compares),
`pretrain loss` the last logged training loss. GLUE / SuperGLUE are T5's benchmark averages
(mean over T5's groups, each the mean of its metrics, x100): the evaluator's glue.json /
super_glue.json when every task was scored, else the average over the groups that were,
with a note in `df.attrs["notes"]`. `df.attrs["score_columns"]` lists the columns where
higher is better; `best_mask(df)` marks their best values.

`training_curves(DIR)`: the metrics.jsonl records of every point's pretraining, long format.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np
import pandas as pd

from t2t import fileio
from t2t import workdir as layout
from t2t.sweep import status
from t2t.tasks import metrics as metrics_lib

BENCHMARKS = {"glue": "GLUE", "super_glue": "SuperGLUE"}
INFO_COLUMNS = ["model", "pretrain task", "params", "FLOPs", "pretrain loss"]
FORMATS = ("markdown", "csv", "latex")
T5_COLUMN_ORDER = [entry for groups in metrics_lib.AVERAGE_GROUPS.values()
                   for entries in groups.values() for entry in entries]


# ----------------------------------------------------------------------------- reading
def sweep_points(workdir) -> list[str]:
    """Point folders in grid order (sweep.json), else every folder with a point.json / pretrain/."""
    workdir = pathlib.Path(workdir)
    sweep = fileio.read_json(workdir / "sweep.json")
    if sweep:
        return [p for p in sweep["points"] if (workdir / p).is_dir()]
    if not workdir.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {workdir}")
    return sorted(p.name for p in workdir.iterdir()
                  if (p / "point.json").is_file() or layout.config_path(p / "pretrain").is_file())


def eval_scores(point_dir: pathlib.Path) -> tuple[dict[tuple[str, str], dict], dict[str, dict]]:
    """({(task, split): metrics}, {benchmark: average metrics}) over all fine-tuning runs."""
    scores, averages = {}, {}
    for run_dir in sorted((point_dir / "finetune").glob("*")):
        found = status.latest_eval(run_dir)
        if not found:
            continue
        for name, data in found[1].items():
            if name in BENCHMARKS:
                averages[name] = data["metrics"]
            else:
                scores[(data["task"], data["split"])] = data["metrics"]
    return scores, averages


def benchmark_average(scores: dict[tuple[str, str], dict], benchmark: str) -> tuple[float, list[str]]:
    """(T5's average over the groups with every metric scored, those groups' names)."""
    present = metrics_lib.group_averages(scores, benchmark)
    return (float(np.mean(list(present.values()))) if present else float("nan")), list(present)


def _model_size(point_dir: pathlib.Path, info: dict) -> tuple[float, float]:
    """(params, FLOPs per example) from point.json, else params from pretrain/config.json."""
    if "params" in info:
        return float(info["params"]), float(info.get("flops_per_example", np.nan))
    config = fileio.read_json(layout.config_path(point_dir / "pretrain"))
    if not config:
        return np.nan, np.nan
    from t2t.models import variants
    return float(variants.count_params(variants.from_run_config(config))), np.nan


def point_row(point_dir: pathlib.Path, notes: dict[str, set]) -> dict:
    """One table row; partial benchmark averages add their group count to `notes`."""
    info = fileio.read_json(point_dir / "point.json") or {}
    config = fileio.read_json(layout.config_path(point_dir / "pretrain")) or {}
    params, flops = _model_size(point_dir, info)
    train = [r for r in layout.read_metrics(point_dir / "pretrain", skip_malformed=True)
             if r.get("split") == "train" and "loss" in r]
    row = {"model": info.get("model", config.get("model", {}).get("name", "")),
           "pretrain task": info.get("pretrain_task", config.get("data", {}).get("task", "")),
           "params": params, "FLOPs": flops,
           "pretrain loss": train[-1]["loss"] if train else np.nan}
    scores, averages = eval_scores(point_dir)
    for benchmark, column in BENCHMARKS.items():
        if benchmark in averages:
            row[column] = averages[benchmark]["average"]
            continue
        row[column], groups = benchmark_average(scores, benchmark)
        total = len(metrics_lib.AVERAGE_GROUPS[benchmark])
        if 0 < len(groups) < total:
            notes[column].add(f"{len(groups)} of {total} groups ({', '.join(groups)})")
    for (task, split), values in scores.items():
        name = task if split == "validation" else f"{task}/{split}"
        row.update({f"{name}/{metric}": v for metric, v in values.items()})
    return row


def results_table(workdir, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """The sweep's table (see the module docstring); `metrics` keeps only those score columns
    (exact names, or a task name for all its metrics, e.g. "glue_rte")."""
    workdir = pathlib.Path(workdir)
    names = sweep_points(workdir)
    if not names:
        raise FileNotFoundError(f"{workdir}: no sweep points (expected <point>/point.json folders)")
    notes = {column: set() for column in BENCHMARKS.values()}
    df = pd.DataFrame([point_row(workdir / n, notes) for n in names], index=pd.Index(names, name="point"))
    for column in BENCHMARKS.values():
        if column not in df:
            df[column] = np.nan
    tasks = [c for c in df.columns if c not in INFO_COLUMNS and c not in BENCHMARKS.values()]
    scores = list(BENCHMARKS.values()) + sorted(tasks, key=_t5_order)
    if metrics:
        scores = select_columns(scores, metrics)
    df = df[INFO_COLUMNS + scores].astype({"params": "Int64"})
    df.attrs["score_columns"] = scores
    df.attrs["notes"] = [f"{c}: average over {' / '.join(sorted(n))} only; the whole benchmark "
                         "was not evaluated" for c, n in notes.items() if n and c in scores]
    return df


def _t5_order(column: str) -> tuple:
    """Per-task columns in the order of T5's tables (GLUE, then SuperGLUE), others after."""
    for i, (task, split, metric) in enumerate(T5_COLUMN_ORDER):
        if column in (f"{task}/{metric}", f"{task}/{split}/{metric}"):
            return (0, i, column)
    return (1, 0, column)


def select_columns(columns: Sequence[str], wanted: Sequence[str]) -> list[str]:
    out = []
    for w in wanted:
        hits = [c for c in columns if c == w or c.startswith(f"{w}/")]
        if not hits:
            raise KeyError(f"--metric {w!r} matches no column; score columns: {list(columns)}")
        out += [c for c in hits if c not in out]
    return out


def training_curves(workdir, stage: str = "pretrain", split: str = "train") -> pd.DataFrame:
    """Every point's metrics.jsonl records of `split` in its run folder `stage` ("pretrain",
    "finetune/<name>"), long format: columns point, step, split, loss, ..."""
    workdir = pathlib.Path(workdir)
    frames = []
    for name in sweep_points(workdir):
        records = [r for r in layout.read_metrics(workdir / name / stage, skip_malformed=True)
                   if r.get("split") == split]
        if records:
            frames.append(pd.DataFrame(records).assign(point=name))
    if not frames:
        return pd.DataFrame(columns=["point", "step", "split", "loss"])
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- printing
def best_mask(df: pd.DataFrame) -> pd.DataFrame:
    """True where a score column holds its maximum (ties all marked); False elsewhere."""
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    for column in df.attrs.get("score_columns", []):
        values = pd.to_numeric(df[column], errors="coerce")
        if values.notna().any():
            mask[column] = np.isclose(values, values.max()) & values.notna()
    return mask


def _cell(column: str, value) -> str:
    if value is None or pd.isna(value):
        return "-"
    if column == "params":
        for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
            if value >= scale:
                return f"{value / scale:.2f}{suffix}"
        return str(int(value))
    if column == "FLOPs":
        return f"{value:.3g}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.2f}"
    return str(value)


def _latex_escape(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char if char != "\\" else r"\textbackslash{}")
    return text


def format_table(df: pd.DataFrame, fmt: str = "markdown") -> str:
    """The table as markdown (best **bold**), LaTeX (best \\textbf) or CSV (raw values)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {FORMATS}")
    if fmt == "csv":
        return df.to_csv()
    mask = best_mask(df)
    esc = _latex_escape if fmt == "latex" else (lambda s: s)
    bold = (lambda s: rf"\textbf{{{s}}}") if fmt == "latex" else (lambda s: f"**{s}**")
    cells = pd.DataFrame({esc(c): [bold(esc(_cell(c, v))) if mask.at[i, c] else esc(_cell(c, v))
                                   for i, v in df[c].items()] for c in df.columns},
                         index=pd.Index([esc(str(i)) for i in df.index], name=esc(df.index.name or "")))
    notes = df.attrs.get("notes", [])
    if fmt == "latex":
        return cells.to_latex(escape=False) + "".join(f"% {n}\n" for n in notes)
    align = ["left"] + ["left" if c in ("model", "pretrain task") else "right" for c in df.columns]
    text = cells.to_markdown(colalign=align, disable_numparse=True) + "\n"
    return text + ("\n" + "\n".join(notes) + "\n" if notes else "")

