"""python -m t2t.results DIR [--format markdown|csv|latex] [--metric NAME[,NAME]]

Prints a sweep's results shaped like the T5 paper's tables: one row per point, its parameter
count and pretraining FLOPs per example, the GLUE and SuperGLUE averages and every per-task
score, the best value of each score column in bold (markdown, LaTeX; CSV gives raw values).
--metric keeps only those score columns (a column name, or a task name for all its metrics).
The same DataFrame comes from t2t.sweep.table.results_table(DIR) (see that module).
"""
from __future__ import annotations

import argparse
import sys

from t2t.sweep import table as results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2t.results", description=__doc__.split("\n\n")[1])
    parser.add_argument("workdir", help="a sweep folder (python -m t2t.sweep --workdir)")
    parser.add_argument("--format", default="markdown", choices=results.FORMATS)
    parser.add_argument("--metric", action="append", default=[],
                        help="score column(s) to show, comma-separated or repeated (default: all)")
    args = parser.parse_args(argv)
    wanted = [m.strip() for arg in args.metric for m in arg.split(",") if m.strip()]
    try:
        df = results.results_table(args.workdir, wanted)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"t2t.results: {e.args[0] if isinstance(e, KeyError) and e.args else e}") from None
    print(results.format_table(df, args.format), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
