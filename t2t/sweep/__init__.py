"""Ablation sweeps: grids of points (grid.py), running them (launch.py, status.py) and their
results as tables (results.py). CLIs: python -m t2t.sweep, python -m t2t.results."""
