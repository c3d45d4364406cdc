"""Helpers of the sweep tests: the repository root, a tiny grid file, a fake Python."""
import os
import pathlib
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]

# A scale small enough for a test: 3 pretraining steps, 2 fine-tuning steps, 4 examples.
MICRO_GRID = textwrap.dedent('''\
    import dataclasses
    from t2t.sweep import grid as g

    MICRO = dataclasses.replace(
        g.TINY, name="micro", inputs_length=32, batch_size=4, pretrain_steps=3, checkpoint_every=3,
        log_every=1, finetune_steps=2, finetune_lengths=(64, 8), finetune_batch_size=4,
        finetune_checkpoint_every=2, eval_max_examples=4,
        model=dict(g.TINY.model, d_model=32, num_heads=2, head_dim=16, d_ff=64))
    GRID = g.Grid("micro", points=[g.Point("edec6.span", "table2_enc_dec_6layer", "span_corruption")],
                  scales={"micro": MICRO})
    get_config = GRID.get_config
''')


def subprocess_env(**extra) -> dict:
    """This environment for child processes: the repo importable, one CPU device."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


FAKE_PYTHON = textwrap.dedent('''\
    #!{python}
    """Stands in for `python -m t2t.train|t2t.evaluate ...`: logs the call, then fails, hangs
    until SIGTERM, or finishes (a train run leaves checkpoints/<FAKE_STEPS>) as env says."""
    import json, os, pathlib, signal, sys, time

    module, args = sys.argv[2], sys.argv[3:]
    workdir = args[args.index("--workdir") + 1]
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps([module, workdir]) + "\\n")

    def matches(var):
        return any(p and p in workdir for p in os.environ.get(var, "").split(","))

    if matches("FAKE_FAIL"):
        print("step 1 ok\\nTraceback (most recent call last):\\nValueError: boom in " + workdir,
              file=sys.stderr)
        sys.exit(2)
    if matches("FAKE_HANG"):
        def on_term(signum, frame):  # like t2t.train: save an earlier step, exit 0
            with open(os.environ["FAKE_LOG"], "a") as f:
                f.write(json.dumps(["SIGTERM", workdir]) + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        pathlib.Path(os.environ["FAKE_READY"]).touch()
        time.sleep(60)
        sys.exit(5)
    if module == "t2t.train":
        os.makedirs(os.path.join(workdir, "checkpoints", os.environ["FAKE_STEPS"]))
''')
