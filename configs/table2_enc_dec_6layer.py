"""T5 Table 2: Encoder-decoder, 6 layers each, P params, M/2 FLOPs; denoising objective on C4.

The LM objective is the same config with --config.data.objective.name=prefix_lm.
"""
from configs import common


def get_config():
    return common.t5_pretrain("table2_enc_dec_6layer")
