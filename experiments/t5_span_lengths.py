"""T5 paper Table 7: i.i.d. corruption vs mean span lengths 2, 3, 5, 10 (5 points).

All at 15% corruption on the encoder-decoder baseline: i.i.d. is "replace corrupted spans",
the others are span corruption with that mean noise span length (3 is T5's default).
"""
from t2t.sweep.grid import Grid, Point

SPAN_LENGTHS = (2, 3, 5, 10)

GRID = Grid(
    name="t5_span_lengths",
    description=__doc__.splitlines()[0],
    points=[Point("iid", "table2_enc_dec", "iid_denoise")]
    + [Point(f"span_{n}", "table2_enc_dec", "span_corruption",
             objective_kwargs={"mean_noise_span_length": float(n)}) for n in SPAN_LENGTHS],
)
get_config = GRID.get_config
