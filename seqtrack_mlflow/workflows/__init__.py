"""Entry points made of steps: `main` (select_data -> train -> evaluate under one parent run) and `sweep`
(one select_data, then a train + evaluate pair per Optuna trial). Each runs the steps' `run_*`
functions as nested MLflow runs, as an MLflow multistep project does; the steps never import these."""
