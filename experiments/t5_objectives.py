"""T5 paper Tables 3 and 4: pretraining objectives on the encoder-decoder baseline (6 points).

Prefix LM, BERT-style (15% of tokens masked or replaced, the whole text as target),
deshuffling, MASS-style (masked tokens, the whole text as target), replace corrupted spans
(i.i.d. corruption, runs of corrupted tokens share one sentinel, targets list them) and drop
corrupted tokens (targets are the dropped tokens).
"""
from t2t.sweep.grid import Grid, Point

OBJECTIVES = {
    "prefix_lm": "prefix_lm",
    "bert_style": "bert_t5",
    "deshuffling": "deshuffle",
    "mass_style": "mass",
    "replace_spans": "iid_denoise",
    "drop_tokens": "drop_tokens",
}

GRID = Grid(
    name="t5_objectives",
    description=__doc__.splitlines()[0],
    points=[Point(name, "table2_enc_dec", objective) for name, objective in OBJECTIVES.items()],
)
get_config = GRID.get_config
