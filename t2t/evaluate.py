"""Evaluate on GLUE/SuperGLUE task splits with T5's postprocessors and metrics.

Evaluate a training run's checkpoint:

  python -m t2t.evaluate --workdir DIR --tasks glue,super_glue|TASK,...
      [--split validation] [--data_dir ../shared/data] [--vocab SPM_MODEL]
      [--checkpoint STEP_OR_DIR] [--max_examples N] [--method decode|rank] [--batch_size 32]

reads DIR/config.json and the latest checkpoint (or step STEP, or a params directory such as
DIR/best or a converted checkpoint with the same model), decodes (greedy, as T5) or
rank-classifies every example (t2t/eval/inference.py) and writes
`DIR/eval/<step>/<task>.json` ({"task", "split", "checkpoint", "method", "metrics",
"inference"}) and `<task>.predictions.jsonl` ({"input", "target", "prediction"} per line);
MNLI's splits are `glue_mnli.validation_matched.json` etc., benchmark averages `glue.json` /
`super_glue.json`. `--vocab` defaults to the run's data.vocab, `--data_dir` to its data_dir.

Score given predictions (no model needed):

  python -m t2t.evaluate --predictions preds.jsonl [--tasks glue,super_glue_cb]
      [--split validation] [--data_dir ../shared/data]

`preds.jsonl` holds one `{"task": ..., "prediction": ...}` per line, a task's
lines in the order `python -m t2t.inspect` lists its split (MNLI: matched, then
mismatched, or mark each line with `"split"`). `--tasks` (tasks or the `glue`
/ `super_glue` mixtures) defaults to the tasks the file names; lines of other
tasks are ignored.

Both print one JSON object per task split, `{"task", "split", "metrics", ...}`, then the
GLUE / SuperGLUE averages (as T5 computes them) when every task they need was scored.
"""
from __future__ import annotations

from t2t import allocator

if __name__ == "__main__":  # before the heavy imports: XLA CPU steps run faster under tcmalloc
    allocator.reexec_with_tcmalloc()

import argparse
import json
import sys

from t2t import fileio
from t2t import workdir as layout
from t2t.eval import evaluator


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m t2t.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", help="JSONL of {task, prediction} to score without a model")
    parser.add_argument("--workdir", help="training workdir whose checkpoint to evaluate")
    parser.add_argument("--tasks", default="", help="comma-separated task or mixture names (glue, super_glue)")
    parser.add_argument("--split", default="validation", help="split to score (default: validation)")
    parser.add_argument("--data_dir", default=None, help="folder with glue/ and superglue/ (else the run's "
                        "data_dir, else $T2T_DATA_DIR, else TFDS)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint step, or a params directory (DIR/best, a converted checkpoint); "
                        "default: the latest step")
    parser.add_argument("--vocab", default=None, help="SentencePiece model (default: the run's data.vocab)")
    parser.add_argument("--max_examples", type=int, default=None, help="first N examples of each split")
    parser.add_argument("--method", default="decode", choices=("decode", "rank"),
                        help="greedy decoding (T5) or rank classification over the label strings")
    parser.add_argument("--batch_size", type=int, default=32, help="rows per inference batch")
    args = parser.parse_args(argv)
    if bool(args.predictions) == bool(args.workdir):
        parser.error("give exactly one of --predictions FILE.jsonl and --workdir DIR")
    if args.workdir and not args.tasks.strip():
        parser.error("--workdir needs --tasks (task or mixture names, e.g. glue_rte or glue)")
    if args.max_examples is not None and args.max_examples < 1:
        parser.error(f"--max_examples must be >= 1, got {args.max_examples}")
    return args


def _task_names(args) -> list[str]:
    return [t.strip() for t in args.tasks.split(",") if t.strip()]


def score_predictions_file(args: argparse.Namespace) -> list[dict]:
    """The JSON objects to print for `--predictions`: task splits, then benchmark averages."""
    results, averages = evaluator.evaluate_predictions_file(
        args.predictions, _task_names(args) or None, split=args.split, data_dir=args.data_dir)
    return [r.summary() for r in results] + averages


def evaluate_checkpoint(args: argparse.Namespace) -> list[dict]:
    """Evaluates a run's checkpoint, writes DIR/eval/<step>/ and returns the lines to print."""
    from t2t.eval import inference
    from t2t.eval import run as run_lib

    tasks = evaluator.resolve_tasks(_task_names(args))  # a typo fails before any loading
    run = run_lib.load_run(args.workdir, args.checkpoint, vocab=args.vocab)
    runner = inference.Inference(run.model, run.vocab, sequence_length=run.sequence_length,
                                 batch_size=args.batch_size, sharding=run.batch_sharding)
    data_dir = args.data_dir or run.data_dir
    with run.context():
        results, averages = inference.evaluate_tasks(
            runner, run.params, tasks, args.split, method=args.method, data_dir=data_dir,
            max_examples=args.max_examples)
    lines = []
    for result, info in results:
        name = result.task if result.split == args.split else f"{result.task}.{result.split}"
        line = {**result.summary(), "checkpoint": run.label, "method": info.pop("method"),
                "inference": info}
        fileio.atomic_write_json(layout.eval_result_path(args.workdir, run.label, name), line)
        fileio.atomic_write_text(layout.eval_predictions_path(args.workdir, run.label, name),
                                 "".join(json.dumps(r) + "\n" for r in result.prediction_records()))
        lines.append(line)
    for average in averages:
        fileio.atomic_write_json(layout.eval_result_path(args.workdir, run.label, average["task"]),
                                 average)
    return lines + averages


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        lines = score_predictions_file(args) if args.predictions else evaluate_checkpoint(args)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise SystemExit(f"t2t.evaluate: {e}") from None
    except KeyError as e:  # unknown task names carry suggestions
        raise SystemExit(f"t2t.evaluate: {e.args[0] if e.args else e}") from None
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
