"""python -m t2t.train --config configs/NAME.py --workdir DIR [--config.a.b=value ...]

`--config.model.overrides.FIELD=value` sets any model field (t2t.models.variants.base_config,
e.g. scan_layers=True, remat_policy=dots, vocab_size=8192), also one the config file does not
list (ml_collections' flags can only override fields that exist).

Multi-host: pass --coordinator_address HOST:PORT --num_processes N --process_id I
(or nothing on TPU VMs / SLURM, where JAX detects the cluster itself).
"""
from __future__ import annotations

from t2t import allocator

if __name__ == "__main__":  # before the heavy imports: XLA CPU steps run faster under tcmalloc
    allocator.reexec_with_tcmalloc()

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "a configs/*.py file with get_config()",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "folder for checkpoints, metrics and the resolved config")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-host)")
flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS
_OVERRIDES: dict[str, str] = {}


def init_distributed() -> None:
    """jax.distributed from the flags, or auto-detected on TPU VM / SLURM clusters."""
    import jax

    if FLAGS.coordinator_address:
        if jax.config.jax_platforms in (None, "", "cpu") and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif (os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",")
          or int(os.environ.get("SLURM_NTASKS", "1")) > 1
          or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")):
        jax.distributed.initialize()  # TPU VM (one or many hosts) or SLURM: JAX finds the cluster


_MODEL_OVERRIDE = "--config.model.overrides."


def split_model_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv without the --config.model.overrides.FIELD=value flags, {FIELD: value})."""
    rest, found = [], {}
    for arg in argv:
        if arg.startswith(_MODEL_OVERRIDE) and "=" in arg:
            field, value = arg[len(_MODEL_OVERRIDE):].split("=", 1)
            found[field] = value
        else:
            rest.append(arg)
    return rest, found


def parse_model_override(field: str, text: str):
    """`text` as the type of model field `field`; a usage error for unknown fields/values."""
    from t2t import config_file
    try:
        return config_file.parse_model_override(field, text)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def apply_model_overrides(cfg, overrides: dict[str, str]) -> None:
    with cfg.unlocked():
        for field, text in overrides.items():
            cfg.model.overrides[field] = parse_model_override(field, text)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    apply_model_overrides(FLAGS.config, _OVERRIDES)
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    init_distributed()
    from t2t.train import loop

    try:
        result = loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except loop.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    from t2t.workdir import read_metrics

    train = [r for r in read_metrics(FLAGS.workdir) if r["split"] == "train"]
    summary = f"done: step {result['step']} in {FLAGS.workdir}"
    if train:
        summary += (f"; loss {train[0]['loss']:.3f} (step {train[0]['step']}) -> "
                    f"{train[-1]['loss']:.3f} (step {train[-1]['step']}), "
                    f"{train[-1]['tokens_per_second']:.0f} tokens/s")
    print(summary)


if __name__ == "__main__":
    sys.argv, _OVERRIDES = split_model_overrides(sys.argv)
    app.run(main)
