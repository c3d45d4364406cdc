"""A tiny BERT-style encoder-only model pretrained with BERT's masked-LM objective on the
built-in corpus (CPU, about a minute): 15% of tokens corrupted (80% mask, 10% random, 10%
kept), the loss on the corrupted positions only. Learned absolute positions, GELU, LayerNorm.
"""
from configs import common


def get_config():
    cfg = common.base()
    cfg.model.name = "tiny_encoder_only"
    cfg.model.overrides = dict(vocab_size=8192, d_model=128, num_heads=4, head_dim=32, d_ff=512,
                               num_encoder_layers=2, dropout_rate=0.0, dtype="float32",
                               position="absolute", max_length=128, activation="gelu",
                               norm="layer")
    cfg.data.corpus = "builtin"
    cfg.data.objective = common.objective("bert_mlm")
    cfg.data.inputs_length = 128
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
