"""MLproject entry point `sweep`: a thin wrapper over `seqtrack-mlflow sweep`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from seqtrack_mlflow.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])
