"""`deploy-model drift-reference`: the training data's distributions as the server's drift reference.

Writes one JSON file, format ``onnxserve-drift-reference/2`` (the reference server's
``--drift-reference``): per feature, quantile bin ``edges`` and ``fractions`` (numeric) or
``categories`` and ``frequencies`` (integer codes with few values), and its ``null_rate``; with a
model, the distribution of its prediction on a sample of the rows, computed with onnxruntime.
Features are mapped to the model's inputs: a table's columns to one [N, F] input in order (or in
the order --columns names them), or to [N]/[N, 1] inputs by name; an npz's arrays by input name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model import __version__
from deploy_model.common.errors import StageError
from deploy_model.common.files import sha256_file
from deploy_model.model.drift_data import DataSet, read_data
from deploy_model.model.drift_mapping import Feature, map_features, model_inputs, prediction_output

FORMAT = "onnxserve-drift-reference/2"
REFERENCE_FILE = "drift-reference.json"
MAX_CATEGORIES = 20  # an integer column with at most this many values is categorical
PREDICTION_ROWS = 2000  # rows the model scores for the prediction distribution


def numeric_stats(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Quantile bins of the non-null values: [edges[i-1], edges[i]), as the server bins them."""
    kept = values[~np.isnan(values)]
    edges = np.unique(np.quantile(kept, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, kept, side="right"), minlength=len(edges) + 1)
    return {"kind": "numeric", "edges": edges.tolist(), "fractions": (counts / len(kept)).tolist()}


def categorical_stats(values: np.ndarray) -> dict[str, Any]:
    kept = values[~np.isnan(values)]
    cats, counts = np.unique(kept, return_counts=True)
    return {"kind": "categorical", "categories": cats.tolist(), "frequencies": (counts / len(kept)).tolist(),
            "other": 0.0}


def stats(values: np.ndarray, bins: int, integral: bool) -> dict[str, Any]:
    nulls = np.isnan(values)
    kept = values[~nulls]
    if integral and len(np.unique(kept)) <= MAX_CATEGORIES:
        out = categorical_stats(values)
    else:
        out = numeric_stats(values, bins)
    return {**out, "null_rate": float(nulls.mean())}


def _check_feature(feature: Feature) -> None:
    values = feature.values
    if np.all(np.isnan(values)):
        raise StageError(f"feature {feature.name!r} holds no values (all null): expected numbers")
    if np.any(np.isinf(values)):
        raise StageError(f"feature {feature.name!r} holds infinite values: expected finite numbers or nulls")
    if feature.integer_input and np.any(np.isnan(values)):
        raise StageError(f"feature {feature.name!r} has nulls, but input {feature.input!r} takes integers: "
                         "expected the values the model reads (fill the nulls as the training pipeline does)")
    if feature.integer_input and np.any(values[~np.isnan(values)] % 1 != 0):
        raise StageError(f"feature {feature.name!r} has fractional values, but input {feature.input!r} "
                         "takes integers: expected the values the model reads")


def prediction_stats(model: Path, data: DataSet, features: list[Feature], bins: int,
                     output: str | None) -> dict[str, Any]:
    """The model's prediction distribution on up to PREDICTION_ROWS rows (chosen with seed 0)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    take = np.sort(rng.choice(data.rows, size=min(PREDICTION_ROWS, data.rows), replace=False))
    feeds = model_inputs(session, data, features, take)
    name = prediction_output(session, output)
    try:
        result = session.run([name], feeds)[0]
    except Exception as exc:  # onnxruntime's own exception types
        raise StageError(f"the model refused the reference rows: {' '.join(str(exc).split())[:300]}") from None
    flat = np.asarray(result).reshape(len(take), -1)
    # Scores of several classes: the class is the prediction (the server takes the same argmax).
    transform = "argmax" if flat.shape[1] > 1 else "value"
    values = flat.argmax(axis=1) if transform == "argmax" else flat[:, 0]
    integral = transform == "argmax" or values.dtype.kind in "iub"
    body = stats(values.astype(np.float64), bins, integral)
    return {"output": name, "transform": transform, "rows": len(take), **body}


def build(data_path: Path, model: Path | None, bins: int, columns: list[str] | None,
          output: str | None) -> dict[str, Any]:
    """The reference document of `data_path` (and `model`'s inputs and prediction, when given)."""
    if not 2 <= bins <= 100:
        raise StageError(f"--bins {bins}: expected 2 to 100 bins per feature")
    if model is not None and not Path(model).is_file():
        raise StageError(f"model {model} not found: expected the .onnx file the reference is for")
    data = read_data(data_path)
    features = map_features(data, model, columns)
    for f in features:
        _check_feature(f)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "generator": f"deploy-model {__version__}",
        "source": {"file": data.path.name, "kind": data.kind, "rows": data.rows, "sha256": sha256_file(data.path)},
        "model": {"file": Path(model).name, "sha256": sha256_file(Path(model))} if model else None,
        "bins": bins,
        "features": [{"name": f.name, "input": f.input, "index": f.index,
                      **stats(f.values, bins, f.integral)} for f in features],
        "prediction": prediction_stats(Path(model), data, features, bins, output) if model else None,
    }
    return doc


def run_drift_reference(data_path: Path, out: Path, model: Path | None = None, bins: int = 10,
                        columns: list[str] | None = None, output: str | None = None) -> dict[str, Any]:
    """Build the reference and write it to out/drift-reference.json (atomically: whole or not at all)."""
    doc = build(Path(data_path), model, bins, columns, output)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StageError(f"--out {out} is a file: expected a directory to write {REFERENCE_FILE} into")
    out.mkdir(parents=True, exist_ok=True)
    target = out / REFERENCE_FILE
    staging = out / f".{REFERENCE_FILE}.{os.getpid()}.tmp"
    staging.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    staging.replace(target)
    feats = doc["features"]
    pred = doc["prediction"]
    return {
        "stage": "drift-reference",
        "ok": True,
        "wrote": [str(target)],
        "reference": str(target),
        "format": FORMAT,
        "features": [{"name": f["name"], "input": f["input"], "index": f["index"], "kind": f["kind"],
                      "null_rate": f["null_rate"]} for f in feats],
        "prediction": {k: pred[k] for k in ("output", "transform", "kind", "rows")} if pred else None,
        "summary": {
            "rows": doc["source"]["rows"],
            "features": f"{len(feats)} ({sum(f['kind'] == 'categorical' for f in feats)} categorical, "
                        f"{sum(f['null_rate'] > 0 for f in feats)} with nulls)",
            "prediction": (f"{pred['output']} ({pred['transform']}, {pred['kind']}) on {pred['rows']} rows"
                           if pred else "none (no --model)"),
            "next": f"answer drift_reference: {target} in answers.yaml; render ships it with the image",
        },
    }
