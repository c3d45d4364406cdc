"""A tiny encoder-decoder pretrained with span corruption on the built-in corpus (CPU, ~1 min)."""
from configs import common


def get_config():
    cfg = common.base()
    cfg.model.name = "tiny"
    cfg.model.overrides = dict(vocab_size=8192, d_model=128, num_heads=4, head_dim=32, d_ff=512,
                               num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0,
                               dtype="float32")
    cfg.data.corpus = "builtin"
    cfg.data.objective = common.objective("span_corruption")
    cfg.data.inputs_length = 128   # targets: 29, as span corruption needs
    cfg.data.batch_size = 16
    cfg.train.num_steps = 200
    cfg.train.log_every = 25
    cfg.train.eval_every = 100
    cfg.train.eval_steps = 2
    cfg.optimizer.name = "adamw"
    cfg.optimizer.schedule = "cosine"
    cfg.optimizer.learning_rate = 3e-3
    cfg.optimizer.warmup_steps = 20
    cfg.optimizer.decay_steps = 180
    cfg.optimizer.end_value = 3e-4
    cfg.checkpoint.every_steps = 100
    return cfg
