"""T5 baseline: t5 v1 1 base pretrained on C4 with span corruption (2^19 steps, batch 128, 512/114)."""
from configs import common


def get_config():
    return common.t5_pretrain("t5_v1_1_base")
