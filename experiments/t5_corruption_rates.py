"""T5 paper Table 6: corruption rates 10%, 15%, 25%, 50% (4 points).

The objective is "replace corrupted spans" with i.i.d. corruption (as in section 3.3.3) on the
encoder-decoder baseline; the rate is the objective's noise density.
"""
from t2t.sweep.grid import Grid, Point

RATES = (0.10, 0.15, 0.25, 0.50)

GRID = Grid(
    name="t5_corruption_rates",
    description=__doc__.splitlines()[0],
    points=[Point(f"rate_{round(rate * 100)}", "table2_enc_dec", "iid_denoise",
                  objective_kwargs={"noise_density": rate}) for rate in RATES],
)
get_config = GRID.get_config
