"""TFLite to ONNX through tf2onnx.convert.from_tflite, with tf.lite.Interpreter as the reference.

Most .tflite files are written at batch 1. The converted graph is then offered a free batch dim;
it is kept only when onnxruntime runs a 3-row batch and gives what the batch-1 graph gives row by
row (a Reshape to a constant shape keeps the 1, and then the recorded shapes stay). The reference
runs the interpreter row by row at batch 1, so parity also covers the batched graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.model.convert.tf_onnx_graph import quiet_tensorflow

quiet_tensorflow()

import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from deploy_model.common.errors import StageError  # noqa: E402
from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed  # noqa: E402
from deploy_model.model.convert.tf_onnx_graph import (  # noqa: E402
    converted,
    first_line,
    free_batch,
    no_warnings,
    onnx_inputs,
    onnx_output_names,
)
from deploy_model.model.synthetic import make_inputs  # noqa: E402

PROBE_ROWS = 3


def _interpreter(source: Path) -> Any:
    try:
        with no_warnings():
            interpreter = tf.lite.Interpreter(model_path=str(source), num_threads=1)
            interpreter.allocate_tensors()
    except Exception as exc:  # a damaged flatbuffer or an op this runtime lacks
        raise StageError(f"{source} could not be loaded by tf.lite.Interpreter ({first_line(exc)})") from None
    return interpreter


class Runner:
    """Runs the interpreter on named arrays; rows one at a time when the model fixes batch 1."""

    def __init__(self, interpreter: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.interpreter = interpreter
        self.inputs = interpreter.get_input_details()
        self.outputs = interpreter.get_output_details()
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def _once(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        resized = False
        for detail, array in zip(self.inputs, arrays, strict=True):
            current = self.interpreter.get_input_details()[self.inputs.index(detail)]["shape"]
            if list(current) != list(array.shape):
                self.interpreter.resize_tensor_input(detail["index"], list(array.shape))
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
        for detail, array in zip(self.inputs, arrays, strict=True):
            self.interpreter.set_tensor(detail["index"], np.ascontiguousarray(array, dtype=detail["dtype"]))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(detail["index"]).copy() for detail in self.outputs]

    def batch_one(self) -> bool:
        return all(len(d["shape_signature"]) and d["shape_signature"][0] == 1 for d in self.inputs)

    def __call__(self, feed: Feed) -> Feed:
        arrays = [np.asarray(feed[name]) for name in self.input_names]
        rows = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
        if self.batch_one() and rows != 1:
            per_row = [self._once([a[i:i + 1] for a in arrays]) for i in range(rows)]
            results = [np.concatenate([row[k] for row in per_row]) for k in range(len(self.outputs))]
        else:
            results = self._once(arrays)
        return dict(zip(self.output_names, results, strict=True))


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _try_free_batch(path: Path) -> str | None:
    """Replace the batch-1 graph by a free-batch one when that one is proven equal; None when kept."""
    candidate = path.with_name("free-batch.onnx")
    free_batch(path, candidate)
    try:
        freed, fixed = _session(candidate), _session(path)
        feed = make_inputs(onnx_inputs(candidate), batch=PROBE_ROWS, seed=0)
        together = freed.run(None, feed)
        alone = [fixed.run(None, {k: v[i:i + 1] for k, v in feed.items()}) for i in range(PROBE_ROWS)]
        for index, got in enumerate(together):
            want = np.concatenate([row[index] for row in alone])
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True):
                raise ValueError(f"output {index} differs at batch {PROBE_ROWS}")
    except Exception as exc:  # onnxruntime refuses the graph, or it computes other values: keep batch 1
        candidate.unlink(missing_ok=True)
        return f"the TFLite model fixes batch 1 and its graph cannot take another ({first_line(exc, 120)}): " \
               "the ONNX model keeps batch 1"
    candidate.replace(path)
    return None


def convert_tflite(source: Path, path: Path, options: ConvertOptions) -> Converted:
    """Convert a .tflite file; the reference is tf.lite.Interpreter on the same file."""
    interpreter = _interpreter(source)
    try:
        with no_warnings():
            tf2onnx.convert.from_tflite(str(source), opset=options.target_opset, output_path=str(path))
    except Exception as exc:  # tf2onnx raises ValueError, KeyError, its own errors...
        raise StageError(f"{source}: tf2onnx could not convert it ({type(exc).__name__}: {first_line(exc)})") from None
    input_names = [i["name"] for i in onnx_inputs(path)]
    output_names = onnx_output_names(path)
    runner = Runner(interpreter, input_names, output_names)
    if len(runner.inputs) != len(input_names) or len(runner.outputs) != len(output_names):
        raise StageError(f"{source}: the ONNX model has {len(input_names)} inputs and {len(output_names)} outputs, "
                         f"the TFLite model {len(runner.inputs)} and {len(runner.outputs)}")
    notes = [f"TFLite inputs {', '.join(d['name'] for d in runner.inputs)}"]
    if runner.batch_one():
        kept = _try_free_batch(path)
        notes.append(kept or "the TFLite model fixes batch 1; the ONNX model takes any batch (checked against "
                     "batch-1 runs), and parity ran the interpreter row by row")
    return converted(path, "tflite", runner, notes, tf2onnx.__version__, f"TensorFlow Lite {tf.__version__}")
