"""Sweeps: the search space (`space`) and the Optuna study (`study`)."""
