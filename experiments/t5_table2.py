"""T5 paper Table 2: five architectures x {denoising, LM} objectives (10 points).

Denoising is span corruption (15%, mean span 3). The LM objective (section 3.2.4) splits a
span of text at a random point into inputs and targets for the encoder-decoders and the
prefix LM, and predicts the whole span left to right for the decoder-only language model.

  python -m t2t.sweep --grid experiments/t5_table2.py --scale tiny --workdir W --backend local
"""
from t2t.sweep.grid import Grid, Point

# Table 2 row -> (model variant, LM objective); P params, M FLOPs as the paper counts them.
ARCHITECTURES = {
    "enc_dec": ("table2_enc_dec", "prefix_lm"),                 # 2P, M
    "enc_dec_shared": ("table2_enc_dec_shared", "prefix_lm"),   # P, M
    "enc_dec_6layer": ("table2_enc_dec_6layer", "prefix_lm"),   # P, M/2
    "lm": ("table2_lm", "causal_lm"),                           # P, M
    "prefix_lm": ("table2_prefix_lm", "prefix_lm"),             # P, M
}

GRID = Grid(
    name="t5_table2",
    description=__doc__.splitlines()[0],
    points=[Point(f"{arch}.{objective}", model, "span_corruption" if objective == "denoising" else lm)
            for arch, (model, lm) in ARCHITECTURES.items() for objective in ("denoising", "lm")],
)
get_config = GRID.get_config
