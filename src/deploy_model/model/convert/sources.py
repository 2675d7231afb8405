"""Recognise the source format of a model to convert (a file, a directory or an MLflow URI)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.model.formats import detect_format

# Format key -> how the user would name it (the report's "Model format" row, the CLI's messages).
LABELS: dict[str, str] = {
    "onnx": "ONNX",
    "sklearn-skops": "scikit-learn (skops)",
    "sklearn-pickle": "scikit-learn (pickle)",
    "pickle": "Python pickle",
    "xgboost-json": "XGBoost (JSON)",
    "xgboost-ubj": "XGBoost (UBJSON)",
    "lightgbm-text": "LightGBM (text model)",
    "catboost-cbm": "CatBoost (cbm)",
    "torchscript": "TorchScript",
    "torch-export": "torch.export program (.pt2)",
    "pytorch-checkpoint": "PyTorch checkpoint (torch.save)",
    "tf-savedmodel": "TensorFlow SavedModel",
    "keras": "Keras",
    "tflite": "TFLite",
    "mlflow-uri": "MLflow model URI",
    "mlflow-model-dir": "MLflow model directory",
}
PICKLE_FORMATS = ("sklearn-pickle", "pickle")
URI_PREFIXES = ("models:/", "runs:/")
SUPPORTED = (
    ".onnx, scikit-learn .skops (or .pkl/.joblib with --trust-pickle), XGBoost .json/.ubj, "
    "LightGBM .txt, CatBoost .cbm, TorchScript .pt, torch.export .pt2, a TensorFlow SavedModel "
    "directory, Keras .keras/.h5, .tflite, or an MLflow models:/NAME/VERSION or runs:/ID/PATH URI"
)


@dataclass(frozen=True)
class Source:
    """What a model path holds: its format key, the evidence for it, and the path or URI."""

    format: str
    evidence: str
    location: str

    @property
    def label(self) -> str:
        return LABELS.get(self.format, self.format)

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def is_onnx(self) -> bool:
        return self.format == "onnx"


def is_uri(text: str) -> bool:
    return text.startswith(URI_PREFIXES)


def _head(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _file_format(path: Path) -> tuple[str, str]:
    head = _head(path)
    suffix = path.suffix.lower()
    if head.startswith(b"PK"):
        names = _zip_names(path)
        if "schema.json" in names:
            return "sklearn-skops", "zip archive with a skops schema.json"
        if any(n.endswith("serialized_exported_program.json") or n.endswith("/archive_format")
               or n == "archive_format" for n in names):
            return "torch-export", "zip archive of a torch.export program"
    if head.startswith(b"CBM1"):
        return "catboost-cbm", "CatBoost CBM1 signature"
    if head.startswith(b"tree\n") and b"version=v" in head:
        return "lightgbm-text", "LightGBM text model header"
    if suffix == ".json" and head.lstrip().startswith(b"{"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            document = None
        if isinstance(document, dict) and "learner" in document:
            return "xgboost-json", "JSON document with an XGBoost 'learner'"
        return "unknown", "a JSON document that is not an XGBoost model (no 'learner' key)"
    if suffix == ".ubj" and head.startswith(b"{") and b"learner" in head:
        return "xgboost-ubj", "UBJSON document with an XGBoost 'learner'"
    detected = detect_format(path)
    if detected.format == "pytorch":
        if suffix == ".pt2":
            return "torch-export", detected.evidence
        return "pytorch-checkpoint", detected.evidence
    if detected.format == "tensorflow-savedmodel":
        return "tf-savedmodel", detected.evidence
    return detected.format, detected.evidence


def detect_source(location: str | Path) -> Source:
    """The source format of a model path or URI; a StageError for a missing path or an unknown format."""
    text = str(location)
    if is_uri(text):
        return Source("mlflow-uri", f"URI scheme {text.split(':', 1)[0]}:", text)
    path = Path(text).expanduser()
    if not path.exists():
        raise StageError(f"model file not found: {path} (expected {SUPPORTED})")
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return Source("mlflow-model-dir", "directory holds an MLflow MLmodel file", str(path))
        fmt, evidence = detect_format(path).format, detect_format(path).evidence
        if fmt == "tensorflow-savedmodel":
            return Source("tf-savedmodel", evidence, str(path))
        if fmt == "onnx":
            return Source("onnx", evidence, str(next(path.glob("*.onnx"))))
        raise StageError(f"{path} is {evidence}; expected one model file or a SavedModel directory ({SUPPORTED})")
    fmt, evidence = _file_format(path)
    if fmt in ("unknown", "safetensors"):
        why = ("safetensors holds weights only: rebuild the model in its framework and export it"
               if fmt == "safetensors" else evidence)
        raise StageError(f"{path}: unsupported model format ({why}); supported: {SUPPORTED}")
    return Source(fmt, evidence, str(path))
