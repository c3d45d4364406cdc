"""T5 Table 2: Decoder-only prefix LM, P params, M FLOPs; denoising objective on C4.

The LM objective is the same config with --config.data.objective.name=prefix_lm.
"""
from configs import common


def get_config():
    return common.t5_pretrain("table2_prefix_lm")
