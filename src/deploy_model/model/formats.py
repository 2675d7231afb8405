"""Recognise a model file's format by its signature, and say how to convert what is not ONNX."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

# How to get an ONNX file out of each format we recognise but do not serve.
CONVERSION_HINTS = {
    "pytorch": (
        "PyTorch checkpoint: load the nn.Module in Python and export it with "
        "torch.onnx.export(model, example_inputs, 'model.onnx', dynamo=True) "
        "(name the inputs and mark the batch dim dynamic), then run inspect on model.onnx"
    ),
    "torchscript": (
        "TorchScript archive: load it with torch.jit.load(...) and export with "
        "torch.onnx.export(module, example_inputs, 'model.onnx'), then run inspect on model.onnx"
    ),
    "tensorflow-savedmodel": (
        "TensorFlow SavedModel: convert with `python -m tf2onnx.convert --saved-model DIR "
        "--output model.onnx --opset 17`, then run inspect on model.onnx"
    ),
    "keras": "Keras model: convert with tf2onnx (`tf2onnx.convert.from_keras(model, opset=17)`)",
    "tflite": "TFLite model: convert with `python -m tf2onnx.convert --tflite FILE --output model.onnx`",
    "sklearn-pickle": (
        "scikit-learn pickle: convert with skl2onnx "
        "(`to_onnx(estimator, X[:1].astype('float32'))`), then run inspect on model.onnx"
    ),
    "pickle": "Python pickle: unpickle it in its own environment and export to ONNX (skl2onnx, torch.onnx)",
    "safetensors": (
        "safetensors holds weights only: rebuild the model class, load the weights and export "
        "with torch.onnx.export"
    ),
}


@dataclass(frozen=True)
class Detected:
    format: str
    evidence: str

    @property
    def is_onnx(self) -> bool:
        return self.format == "onnx"

    @property
    def hint(self) -> str:
        return CONVERSION_HINTS.get(self.format, "convert the model to ONNX first")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def detect_format(path: Path) -> Detected:
    """Guess the format from signatures, not only the extension (a renamed file still gets the right answer)."""
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return Detected("tensorflow-savedmodel", "directory holds saved_model.pb")
        onnx_files = sorted(path.glob("*.onnx"))
        if len(onnx_files) == 1:
            return detect_format(onnx_files[0])
        return Detected("directory", f"a directory with {len(onnx_files)} .onnx files")
    with path.open("rb") as handle:
        head = handle.read(64)
    suffix = path.suffix.lower()
    if head.startswith(b"PK"):
        names = _zip_names(path)
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return Detected("torchscript", "zip archive with code/ and constants.pkl")
        if any(n.endswith("data.pkl") for n in names):
            return Detected("pytorch", "zip archive with data.pkl (torch.save)")
        if suffix == ".keras":
            return Detected("keras", "zip archive with .keras extension")
    if head[:4] == b"\x89HDF":
        return Detected("keras", "HDF5 signature")
    if head[4:8] == b"TFL3":
        return Detected("tflite", "TFL3 flatbuffer identifier")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        with path.open("rb") as handle:
            sample = handle.read(1 << 16)
        if b"sklearn" in sample:
            return Detected("sklearn-pickle", "pickle stream naming sklearn classes")
        if b"torch" in sample or suffix in (".pt", ".pth"):
            return Detected("pytorch", "legacy torch pickle stream")
        return Detected("pickle", "pickle protocol header")
    if suffix == ".safetensors":
        return Detected("safetensors", ".safetensors extension")
    if suffix in (".pt", ".pth"):
        return Detected("pytorch", f"{suffix} extension")
    if suffix in (".pkl", ".joblib"):
        return Detected("pickle", f"{suffix} extension")
    # ONNX is a protobuf ModelProto; field 1 (ir_version, varint) is written first by every exporter.
    if head[:1] == b"\x08" or suffix == ".onnx":
        return Detected("onnx", "protobuf ModelProto" if head[:1] == b"\x08" else ".onnx extension")
    return Detected("unknown", f"no known signature (first bytes {head[:8].hex()})")
