"""Evaluate on GLUE/SuperGLUE task splits with T5's postprocessors and metrics.

Score given predictions (no model needed):

  python -m t2t.evaluate --predictions preds.jsonl [--tasks glue,super_glue_cb]
      [--split validation] [--data_dir ../shared/data]

`preds.jsonl` holds one `{"task": ..., "prediction": ...}` per line, a task's
lines in the order `python -m t2t.inspect` lists its split (MNLI: matched, then
mismatched, or mark each line with `"split"`). `--tasks` (tasks or the `glue`
/ `super_glue` mixtures) defaults to the tasks the file names; lines of other
tasks are ignored. Prints one JSON object per task split,
`{"task", "split", "metrics"}`, then the GLUE / SuperGLUE averages (as T5
computes them) when every task they need was scored.

Evaluating a checkpoint (`--workdir DIR [--checkpoint STEP] [--vocab SPM]`,
writing `<workdir>/eval/<step>/<task>.json` and `<task>.predictions.jsonl`)
plugs a model's decode/score into `t2t.eval.evaluator.evaluate_task`; it is
not part of this module yet.
"""
from __future__ import annotations

import argparse
import json
import sys

from t2t.eval import evaluator


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m t2t.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", help="JSONL of {task, prediction} to score without a model")
    parser.add_argument("--tasks", default="", help="comma-separated task or mixture names (glue, super_glue)")
    parser.add_argument("--split", default="validation", help="split to score (default: validation)")
    parser.add_argument("--data_dir", default=None, help="folder with glue/ and superglue/ (else $T2T_DATA_DIR, else TFDS)")
    parser.add_argument("--workdir", help="training workdir whose checkpoint to evaluate")
    parser.add_argument("--checkpoint", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--vocab", default=None, help="SentencePiece model (model evaluation only)")
    return parser.parse_args(argv)


def score_predictions_file(args: argparse.Namespace) -> list[dict]:
    """The JSON objects to print for `--predictions`: task splits, then benchmark averages."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results, averages = evaluator.evaluate_predictions_file(
        args.predictions, tasks or None, split=args.split, data_dir=args.data_dir)
    return [r.summary() for r in results] + averages


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.predictions:
        raise SystemExit("t2t.evaluate: evaluating a checkpoint (--workdir) needs model inference, "
                         "which t2t.evaluate does not have yet; score outputs with --predictions FILE.jsonl")
    try:
        lines = score_predictions_file(args)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise SystemExit(f"t2t.evaluate: {e}") from None
    except KeyError as e:  # unknown task names carry suggestions
        raise SystemExit(f"t2t.evaluate: {e.args[0] if e.args else e}") from None
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
