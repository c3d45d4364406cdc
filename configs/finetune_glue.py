"""T5 fine-tuning on GLUE: Adafactor at a constant 1e-3, dropout 0.1, inputs 512 / targets 128,
batch 128 (packed), from a pretrained model, evaluated on the tasks every 1000 steps.

  python -m t2t.train --config configs/finetune_glue.py --workdir DIR \\
      --config.init_from=PRETRAINED_DIR --config.model.name=t5_v1_0_base \\
      --config.data.vocab=../shared/data/vocab/t5_cc_all.32000/spiece.model

PRETRAINED_DIR is a t2t workdir or a converted Hugging Face checkpoint (python -m t2t.convert);
its model must match model.name + model.overrides. `data.task` is the examples-proportional
`glue` mixture or one task (--config.data.task=glue_rte); `eval.tasks` follows it unless set.
The best params by the task metric (the GLUE average for the mixture) are kept in DIR/best/.
"""
from configs import common


def get_config():
    cfg = common.base()
    cfg.init_from = ""
    cfg.model.name = "t5_v1_0_base"
    cfg.model.overrides = dict(dropout_rate=0.1, vocab_size=32128)
    cfg.data.task = "glue"
    cfg.data.corpus = ""
    cfg.data.inputs_length, cfg.data.targets_length = 512, 128
    cfg.data.batch_size = 128
    cfg.data.pack = True
    cfg.train.num_steps = 2**18
    cfg.train.log_every = 100
    cfg.train.eval_every = 1000
    cfg.train.eval_steps = 0            # no loss eval: the tasks are the evaluation
    cfg.optimizer.name = "adafactor"
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.learning_rate = 1e-3
    cfg.optimizer.warmup_steps = 0
    cfg.checkpoint.every_steps = 5000
    cfg.eval.tasks = cfg.data.get_ref("task") + ""   # follows data.task until set itself
    return cfg
