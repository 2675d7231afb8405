"""scikit-learn -> ONNX with skl2onnx: estimators and pipelines, from skops (or a trusted pickle)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import skl2onnx
import sklearn
import skops.io as sio
from sklearn.base import is_classifier

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import (
    LABEL,
    PROBABILITY,
    VALUE,
    Converted,
    ConvertOptions,
    Feed,
    onnx_opset,
    refuse_pickle,
    tensor_input,
)

INPUT = "input"


def load_estimator(source: Path, options: ConvertOptions) -> Any:
    """A skops file (types outside skops' trusted set must be named by the user), or a trusted pickle."""
    if source.suffix.lower() == ".skops" or _is_skops(source):
        untrusted = sorted(set(sio.get_untrusted_types(file=source)) - set(options.trusted_types))
        if untrusted:
            raise StageError(
                f"{source} names types that skops does not trust by default: {', '.join(untrusted)}. "
                "Review them, then pass --trust-type NAME for each (loading runs their code)"
            )
        return sio.load(source, trusted=list(options.trusted_types) or None)
    refuse_pickle(source, options)
    import joblib  # scikit-learn's own dependency; reads both joblib dumps and plain pickles

    return joblib.load(source)


def _is_skops(source: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(source) as archive:
            return "schema.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return _final_step(steps[-1][1]) if steps else estimator


def _features(estimator: Any, source: Path) -> int:
    count = getattr(estimator, "n_features_in_", None)
    if not isinstance(count, (int, np.integer)):
        raise StageError(f"{source}: the model is not fitted or does not record n_features_in_ "
                         "(expected a fitted scikit-learn estimator or pipeline)")
    return int(count)


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    estimator = load_estimator(source, options)
    if not hasattr(estimator, "predict") and not hasattr(estimator, "transform"):
        raise StageError(f"{source} holds a {type(estimator).__name__}, not a scikit-learn estimator or pipeline")
    features = _features(estimator, source)
    from skl2onnx.common.data_types import FloatTensorType

    classifier = is_classifier(estimator)
    final = _final_step(estimator)
    conv_options = {id(final): {"zipmap": options.zipmap}} if classifier else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            onx = skl2onnx.convert_sklearn(
                estimator, initial_types=[(INPUT, FloatTensorType([None, features]))],
                target_opset={"": options.target_opset, "ai.onnx.ml": 3}, options=conv_options)
        except Exception as exc:  # skl2onnx names the estimator it has no converter for
            raise StageError(f"skl2onnx could not convert {type(estimator).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:300]}") from None
    path = workdir / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    outputs = [o.name for o in onx.graph.output]
    kinds = {outputs[0]: LABEL, outputs[1]: PROBABILITY} if classifier and len(outputs) >= 2 else {n: VALUE for n in outputs}

    def reference(feed: Feed) -> Feed:
        x = feed[INPUT]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "X does not have valid feature names": columns by position
            if classifier:
                return {outputs[0]: np.asarray(estimator.predict(x)), outputs[1]: np.asarray(estimator.predict_proba(x))}
            result = estimator.predict(x) if hasattr(estimator, "predict") else estimator.transform(x)
        return {outputs[0]: np.asarray(result)}

    return Converted(
        onnx_path=path, source_format="sklearn", converter="skl2onnx", converter_version=skl2onnx.__version__,
        opset=onnx_opset(path), inputs=[tensor_input(INPUT, "float32", ["batch", features])], reference=reference,
        framework=f"scikit-learn {sklearn.__version__}", output_kinds=kinds,
        notes=[f"{type(estimator).__name__}" + (" (probabilities as ZipMap)" if classifier and options.zipmap else "")],
    )
