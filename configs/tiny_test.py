"""The smallest real run: a tiny encoder-decoder, span corruption on the built-in corpus.

Used by the tests (resume, multi-host, preemption) and for smoke runs on any machine.
"""
from configs import common


def get_config():
    cfg = common.base()
    cfg.model.name = "tiny"
    cfg.model.overrides = dict(vocab_size=8192)
    cfg.data.corpus = "builtin"
    cfg.data.objective = common.objective("span_corruption")
    cfg.data.inputs_length, cfg.data.targets_length = 32, 8
    cfg.data.batch_size = 8
    cfg.train.num_steps = 20
    cfg.train.log_every = 1
    cfg.train.eval_every = 0
    cfg.optimizer.name = "adamw"
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.learning_rate = 1e-3
    cfg.optimizer.warmup_steps = 0
    cfg.checkpoint.every_steps = 5
    cfg.mesh.data = 1
    return cfg
