"""Which converter module handles each source format, and the launcher group it needs.

Converters are imported by module name only when used, so a framework (torch, tensorflow) loads
only for the model that needs it. A converter module imports its framework at the top: an
ImportError there means its launcher group is not installed yet, which `load_converter` installs
(bin/deploy-model's environment) or names in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from types import ModuleType

from deploy_model.common.errors import StageError
from deploy_model.model.formats import CONVERSION_HINTS


@dataclass(frozen=True)
class ConverterEntry:
    """A source format's converter: module exposing convert(), its launcher group and packages."""

    format: str
    module: str
    group: str
    packages: tuple[str, ...]
    description: str


_PKG = "deploy_model.model.convert."
# A stage waits this long for a converter's group installing in the background, and converts in
# the same call only when it was ready this soon: Claude Code's Bash tool kills a call at 120 s.
INSTALL_WAIT_S = 60.0
CONVERT_AFTER_S = 30.0
SKLEARN = ("scikit-learn", "skl2onnx", "skops")
TREES = ("xgboost-cpu", "lightgbm", "catboost", "onnxmltools")
TORCH = ("torch", "onnxscript")
TF = ("tensorflow", "tf2onnx")
REGISTRY = ("mlflow-skinny",)

CONVERTERS: dict[str, ConverterEntry] = {}


def register(entry: ConverterEntry) -> None:
    """Add or replace the converter of one format."""
    CONVERTERS[entry.format] = entry


for _entry in (
    ConverterEntry("sklearn-skops", _PKG + "from_sklearn", "convert-sklearn", SKLEARN, "scikit-learn via skl2onnx, loaded with skops"),
    ConverterEntry("sklearn-pickle", _PKG + "from_sklearn", "convert-sklearn", SKLEARN, "scikit-learn via skl2onnx, pickle only with --trust-pickle"),
    ConverterEntry("pickle", _PKG + "from_sklearn", "convert-sklearn", SKLEARN, "a pickled scikit-learn model, only with --trust-pickle"),
    ConverterEntry("xgboost-json", _PKG + "from_xgboost", "convert-trees", TREES, "XGBoost via onnxmltools"),
    ConverterEntry("xgboost-ubj", _PKG + "from_xgboost", "convert-trees", TREES, "XGBoost via onnxmltools"),
    ConverterEntry("lightgbm-text", _PKG + "from_lightgbm", "convert-trees", TREES, "LightGBM via onnxmltools"),
    ConverterEntry("catboost-cbm", _PKG + "from_catboost", "convert-trees", TREES, "CatBoost's own ONNX exporter"),
    # Converters of the other frameworks live in these modules (written beside this one).
    ConverterEntry("torchscript", _PKG + "from_torch", "convert-torch", TORCH, "TorchScript via torch.onnx.export"),
    ConverterEntry("torch-export", _PKG + "from_torch", "convert-torch", TORCH, "torch.export program via torch.onnx.export"),
    ConverterEntry("pytorch-checkpoint", _PKG + "from_torch", "convert-torch", TORCH, "a torch.save checkpoint (needs the model's code)"),
    ConverterEntry("tf-savedmodel", _PKG + "from_tf", "convert-tf", TF, "TensorFlow SavedModel via tf2onnx"),
    ConverterEntry("keras", _PKG + "from_tf", "convert-tf", TF, "Keras via tf2onnx"),
    ConverterEntry("tflite", _PKG + "from_tf", "convert-tf", TF, "TFLite via tf2onnx"),
    ConverterEntry("mlflow-uri", _PKG + "from_mlflow", "registry", REGISTRY, "an MLflow registry model, by its flavor"),
    ConverterEntry("mlflow-model-dir", _PKG + "from_mlflow", "registry", REGISTRY, "an MLflow model directory, by its flavor"),
):
    register(_entry)

# The hint of model/formats.py for a format whose converter is not in this version.
_HINT_KEYS = {"torchscript": "torchscript", "torch-export": "pytorch", "pytorch-checkpoint": "pytorch",
              "tf-savedmodel": "tensorflow-savedmodel", "keras": "keras", "tflite": "tflite"}


def converter_for(fmt: str) -> ConverterEntry:
    """The entry of a format; a StageError when no converter handles it."""
    entry = CONVERTERS.get(fmt)
    if entry is None:
        raise StageError(f"no converter for {fmt} models; convertible: {', '.join(sorted(CONVERTERS))}")
    return entry


def _missing_module(entry: ConverterEntry, label: str) -> StageError:
    hint = CONVERSION_HINTS.get(_HINT_KEYS.get(entry.format, ""), "export it to ONNX in its own framework")
    return StageError(f"{label} models are recognised but this version has no converter for them. "
                      f"Convert it to ONNX first: {hint}")


def load_converter(entry: ConverterEntry, label: str) -> ModuleType:
    """Import the converter module, installing its launcher group once when its packages are missing.

    The install runs in the background (common/background_install): this call waits at most
    INSTALL_WAIT_S and goes on to convert only when the group was ready within CONVERT_AFTER_S,
    so install and conversion together stay inside one Bash call; else it exits 4 (run it again).
    """
    if importlib.util.find_spec(entry.module) is None:
        raise _missing_module(entry, label)
    try:
        return importlib.import_module(entry.module)
    except ImportError as exc:
        missing = exc.name or str(exc)
    from deploy_model.common import background_install as bg

    env = bg.LauncherEnv.current()
    if env is not None and (env.requirements / f"{entry.group}.txt").is_file():
        started, was_ready = time.monotonic(), bg.is_ready(env, entry.group)
        current = bg.wait(env, entry.group, INSTALL_WAIT_S, bg.say_stderr)
        if current == "failed":
            raise bg.failed(env, entry.group)
        if current != "ready":
            raise bg.still_installing(env, entry.group, f"it converts the {label} model")
        if not was_ready and time.monotonic() - started > CONVERT_AFTER_S:
            raise bg.StillInstalling(f"the {entry.group} group is installed; run the same command again to convert "
                                     f"the {label} model (this call has used its time installing)")
        importlib.invalidate_caches()  # the distributions just installed must be found
        try:
            return importlib.import_module(entry.module)
        except ImportError as exc:
            missing = exc.name or str(exc)
    raise StageError(
        f"converting {label} models needs the {entry.group} packages ({', '.join(entry.packages)}); "
        f"{missing} is not installed here. Through bin/deploy-model they install on first use "
        f"(`deploy-model install {entry.group}`); in your own environment run: pip install {' '.join(entry.packages)}"
    )
