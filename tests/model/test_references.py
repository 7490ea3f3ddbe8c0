"""The one resolved form of a checkpoint reference (`model/references.py`), logged as `checkpoint_uri`."""

from __future__ import annotations

from pathlib import Path

from seqtrack_mlflow.model.references import resolved_reference

RUN = "0123456789abcdef0123456789abcdef"


def test_a_train_run_id_and_its_runs_uri_resolve_to_the_same_form(tmp_path: Path) -> None:
    downloaded = tmp_path / "downloads" / "epoch_5.ckpt"
    uri = f"runs:/{RUN}/checkpoints/epoch_5.ckpt"
    assert resolved_reference(RUN, downloaded, RUN) == uri
    assert resolved_reference(uri, downloaded, RUN) == uri


def test_registered_models_and_files(tmp_path: Path, monkeypatch) -> None:
    assert resolved_reference("models:/seqtrack/3", tmp_path / "x.ckpt", RUN) == "models:/seqtrack/3"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    # A file: its absolute path, however it was spelled.
    assert resolved_reference("ckpt/epoch_1.ckpt", Path("ckpt/epoch_1.ckpt"), None) == str(
        tmp_path.resolve() / "ckpt" / "epoch_1.ckpt"
    )
