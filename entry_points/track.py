"""MLproject entry point `track`: a thin wrapper over `seqtrack-mlflow track`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from seqtrack_mlflow.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["track", *sys.argv[1:]])
