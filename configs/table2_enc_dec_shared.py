"""T5 Table 2: Encoder-decoder with shared stack, P params, M FLOPs; denoising objective on C4.

The LM objective is the same config with --config.data.objective.name=prefix_lm.
"""
from configs import common


def get_config():
    return common.t5_pretrain("table2_enc_dec_shared")
