"""The export-onnx command: a checkpoint (anything evaluate takes) -> the ONNX graphs and their JSON
(`model/onnx_export.py`) in a folder, for onnxruntime or any other ONNX runtime. No MLflow run: a
`runs:/` URI or run id is only downloaded (into a temporary folder, removed afterwards)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from seqtrack_mlflow.model.factory import load_trained_weights, model_from_weights
from seqtrack_mlflow.model.onnx_export import OnnxExport, export_onnx, quantize_encoder, require_packages
from seqtrack_mlflow.model.references import resolve_checkpoint


def run_export_onnx(
    checkpoint: str, out_dir: Path, *, preset: str | None = None, int8: bool = False
) -> OnnxExport:
    """Export `checkpoint`'s model into `out_dir`; `int8`: also its quantised encoder. `preset`: for an
    official file whose shapes should be checked against a named preset (inferred when unset)."""
    require_packages("export-onnx", ("onnx", "onnxscript") + (("onnxruntime",) if int8 else ()))
    with tempfile.TemporaryDirectory(prefix="seqtrack-export-") as tmp:
        path, _ = resolve_checkpoint(checkpoint, Path(tmp))
        trained = load_trained_weights(path, preset)
    model = model_from_weights(trained.model, trained.state_dict).eval()
    export = export_onnx(model, out_dir)
    if int8:
        quantize_encoder(export)
    return export
