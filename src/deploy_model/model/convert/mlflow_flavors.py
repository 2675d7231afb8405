"""Read an MLflow model directory's MLmodel file: which flavor to use and where its native model file is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy_model.common.errors import StageError

MLMODEL = "MLmodel"
# Flavors in the order they are preferred: ONNX is served as it is; the others are converted.
# Each names the MLmodel keys that may hold the native file (or folder), relative to the model dir.
FLAVOR_KEYS: dict[str, tuple[str, ...]] = {
    "onnx": ("data",),
    "sklearn": ("pickled_model",),
    "xgboost": ("data",),
    "lightgbm": ("data",),
    "catboost": ("data",),
    "pytorch": ("model_data", "data"),
    "tensorflow": ("saved_model_dir", "data"),
    "keras": ("data",),
}
# The suffix each flavor's native file is given once copied out, so that its format is recognised
# (MLflow's own names, model.xgb / model.lgb / model.cb, say nothing to the detectors).
_SUFFIXES = {"lightgbm": ".txt", "catboost": ".cbm"}
# Files inside a flavor's data folder that hold the model itself (others are metadata).
_MODEL_FILES = (".onnx", ".pt2", ".pt", ".pth", ".keras", ".h5", ".tflite", ".skops", ".pkl", ".joblib", ".json",
                ".ubj", ".txt", ".cbm", ".cb", ".lgb", ".xgb")

# What MLflow writes beside the model in a data folder (pytorch's pickle module name, Keras' metadata).
_NOT_MODELS = {"pickle_module_info.txt", "keras_module.txt", "save_format.txt", "requirements.txt"}


@dataclass(frozen=True)
class Flavor:
    """The flavor chosen from an MLmodel file, its native file or folder, and the suffix to give it."""

    name: str
    native: Path
    suffix: str
    settings: dict[str, Any]

    @property
    def is_onnx(self) -> bool:
        return self.name == "onnx"


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """The MLmodel document of a model directory; a StageError when it is missing or not YAML."""
    path = model_dir / MLMODEL
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{model_dir} holds no MLmodel file: expected an MLflow model (mlflow.<flavor>.log_model)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StageError(f"{path} is not a readable MLmodel file: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("flavors"), dict):
        raise StageError(f"{path} has no `flavors` mapping: expected an MLflow MLmodel file")
    return document


def _inside(model_dir: Path, relative: str) -> Path:
    """The path a flavor names, refused when it leaves the model directory (a hostile MLmodel)."""
    target = (model_dir / relative).resolve()
    if not target.is_relative_to(model_dir.resolve()):
        raise StageError(f"{model_dir / MLMODEL} names {relative!r}, outside the model directory: expected a path inside it")
    return target


def _model_file(folder: Path) -> Path:
    """A flavor's data folder: a SavedModel stays a folder, else the one model file inside it."""
    saved = sorted(folder.rglob("saved_model.pb"))
    if len(saved) == 1:  # MLflow's tensorflow flavor: data/model/saved_model.pb
        return saved[0].parent
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in _MODEL_FILES and p.name not in _NOT_MODELS)
    if len(files) == 1:
        return files[0]
    names = ", ".join(str(p.relative_to(folder)) for p in files) or "no model file"
    raise StageError(f"the MLflow model's data folder {folder.name}/ holds {names}: expected one model file or a SavedModel")


def _xgboost_suffix(native: Path, settings: dict[str, Any]) -> str:
    fmt = str(settings.get("model_format") or "").lower()
    if fmt in ("json", "ubj"):
        return "." + fmt
    try:  # model.xgb: XGBoost wrote JSON or UBJSON by its own choice; the bytes say which
        json.loads(native.read_text(encoding="utf-8"))
        return ".json"
    except (UnicodeDecodeError, ValueError):
        return ".ubj"


def choose_flavor(model_dir: Path) -> Flavor:
    """The flavor to deploy: ONNX when the model has it, else the first one a converter handles."""
    flavors = read_mlmodel(model_dir)["flavors"]
    for name, keys in FLAVOR_KEYS.items():
        settings = flavors.get(name)
        if not isinstance(settings, dict):
            continue
        relative = next((str(settings[k]) for k in keys if settings.get(k)), None)
        if relative is None:
            raise StageError(f"the MLflow {name} flavor of {model_dir} names no model file (none of {', '.join(keys)})")
        native = _inside(model_dir, relative)
        if not native.exists():
            raise StageError(f"the MLflow {name} flavor names {relative}, which the downloaded model does not hold")
        if native.is_dir():
            native = _model_file(native)
        suffix = (_xgboost_suffix(native, settings) if name == "xgboost"
                  else _SUFFIXES.get(name, "" if native.is_dir() else native.suffix.lower()))
        if name == "sklearn" and str(settings.get("serialization_format", "")).lower() in ("pickle", "cloudpickle"):
            suffix = ".pkl"  # loaded only with --trust-pickle, as any pickle
        return Flavor(name, native, suffix, settings)
    raise StageError(f"the MLflow model has the flavors {', '.join(sorted(flavors))}; this version deploys "
                     f"{', '.join(FLAVOR_KEYS)}: log the model with one of them (mlflow.onnx.log_model serves as is)")
