"""MLproject entry point `main`: a thin wrapper over `seqtrack-mlflow main`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from seqtrack_mlflow.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["main", *sys.argv[1:]])
