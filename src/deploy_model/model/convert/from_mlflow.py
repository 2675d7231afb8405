"""Converter of MLflow models (a models:/ or runs:/ URI, or a local MLflow model directory): by their flavor.

The flavor's native file is handed to that framework's converter (sklearn, XGBoost, LightGBM,
CatBoost, PyTorch, TensorFlow/Keras). An ONNX flavor needs no conversion: inspect and deploy
serve it as it is, so `convert` says so.
"""

from __future__ import annotations

from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import Converted, ConvertOptions
from deploy_model.model.convert.mlflow_registry import copy_flavor, fetch, uri_deployment_name
from deploy_model.model.convert.registry import converter_for, load_converter
from deploy_model.model.convert.sources import detect_source, is_uri


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    """Download (a URI) or read (a directory) the MLflow model and convert its native file."""
    text = str(source)
    if is_uri(text):
        native, registry = fetch(text, workdir / "mlflow")
        flavor, said = registry["flavor"], (f"version {registry['version']}" if registry["version"]
                                            else f"run {registry['run_id']}")
    else:
        native, chosen = copy_flavor(source, workdir / "mlflow", uri_deployment_name("models:/" + source.name + "/0"))
        flavor, said = chosen.name, "local MLflow model directory"
    inner = detect_source(native)
    if inner.is_onnx:
        raise StageError(f"{text} holds an ONNX model (MLflow onnx flavor): nothing to convert; run inspect or deploy "
                         f"on {text} and it is served as it is")
    module = load_converter(converter_for(inner.format), inner.label)
    converted: Converted = module.convert(inner.path, workdir, options)
    converted.notes.append(f"from MLflow {text} ({said}), flavor {flavor}: {inner.label}")
    return converted
