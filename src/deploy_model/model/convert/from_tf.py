"""TensorFlow to ONNX through tf2onnx: SavedModel directories, Keras .keras/.h5 files and .tflite files.

The reference is the original model in TensorFlow itself: the Keras model, the SavedModel's serving
signature, or tf.lite.Interpreter (tf_lite.py). tensorflow and tf2onnx are imported at the top on
purpose: an ImportError here means the convert-tf launcher group is not installed yet
(registry.load_converter installs it or names it), and nothing imports this module otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.model.convert.tf_onnx_graph import quiet_tensorflow

quiet_tensorflow()  # before tensorflow's import: its C++ logging reads the variable once

import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from deploy_model.common.errors import StageError  # noqa: E402
from deploy_model.model.convert import tf_lite  # noqa: E402
from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed  # noqa: E402
from deploy_model.model.convert.sources import LABELS, detect_source  # noqa: E402
from deploy_model.model.convert.tf_onnx_graph import (  # noqa: E402
    converted,
    first_line,
    no_warnings,
    onnx_output_names,
)

ONNX_FILE = "model.onnx"
SIGNATURE = "serving_default"  # what model.export() and tf.saved_model.save(model) name the serving signature


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    """Convert with tf2onnx into workdir; the reference runs the original in TensorFlow."""
    fmt = detect_source(source).format
    path = workdir / ONNX_FILE
    if fmt == "keras":
        return _from_keras(source, path, options)
    if fmt == "tf-savedmodel":
        return _from_saved_model(source, path, options)
    if fmt == "tflite":
        return tf_lite.convert_tflite(source, path, options)
    raise StageError(f"{source} is {LABELS.get(fmt, fmt)}, not a TensorFlow SavedModel, Keras or TFLite model")


def _spec_shape(shape: Any) -> list[int | None]:
    return [None if dim is None else int(dim) for dim in shape]


def _sample_specs(source: Path, options: ConvertOptions, why: str) -> list[tf.TensorSpec]:
    """Input specs from --sample (each array's dim 0 left free), for a model that records none."""
    feed = options.raw_sample()
    if feed is None:
        raise StageError(f"{source} {why}: pass --sample FILE (.npz with one array per input, or .npy) "
                         "so its inputs' names, dtypes and shapes are known")
    return [tf.TensorSpec([None, *array.shape[1:]], tf.as_dtype(array.dtype), name=name) for name, array in feed.items()]


def _export(function: Callable[..., Any], specs: Sequence[tf.TensorSpec], path: Path, options: ConvertOptions,
            source: Path) -> None:
    """tf2onnx.convert.from_function on a tf.function of the specs; one line on its failure."""
    traced = tf.function(function, input_signature=list(specs))
    try:
        with no_warnings():
            tf2onnx.convert.from_function(traced, input_signature=list(specs), opset=options.target_opset,
                                          output_path=str(path))
    except Exception as exc:  # tf2onnx raises ValueError, KeyError, its own errors...
        raise StageError(f"{source}: tf2onnx could not convert it ({type(exc).__name__}: {first_line(exc)})") from None


def _converted(path: Path, source_format: str, reference: Callable[[Feed], Feed], notes: list[str],
               order: Sequence[str]) -> Converted:
    return converted(path, source_format, reference, notes, tf2onnx.__version__, f"TensorFlow {tf.__version__}", order)


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _output_names(model: Any, count: int) -> list[str]:
    """Keras's own output names when it has one per output, else output / output_<i>."""
    names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    if len(names) == count and len(set(names)) == count:
        return names
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def _load_keras(source: Path) -> Any:
    import keras

    try:
        with no_warnings():
            # safe_mode refuses a Lambda layer's pickled Python code: loading must not run code.
            return keras.saving.load_model(str(source), compile=False, safe_mode=True)
    except Exception as exc:  # a custom class, a Lambda, a damaged file: Keras raises several types
        text = str(exc)
        if "Lambda" in text and "safe_mode" in text:
            raise StageError(f"{source} holds a Keras Lambda layer: its Python code would run on loading, so it "
                             "was not loaded; rebuild the layer without Lambda, or export the model yourself with "
                             "model.export(DIR) and convert the SavedModel DIR") from None
        # Keras nests the real cause: the last "Exception encountered:" names the missing class or function.
        cause = text.rsplit("Exception encountered:", 1)[-1].strip().splitlines()[0][:200] if text.strip() else ""
        raise StageError(f"{source} could not be loaded by Keras {keras.__version__} ({type(exc).__name__}: "
                         f"{cause or type(exc).__name__}); a model with custom layers or functions needs their code: "
                         "export it where that code is with model.export(DIR) and convert the SavedModel DIR") from None


def _from_keras(source: Path, path: Path, options: ConvertOptions) -> Converted:
    model = _load_keras(source)
    try:
        inputs = list(model.inputs)
        specs = [tf.TensorSpec(_spec_shape(t.shape), tf.as_dtype(t.dtype), name=str(t.name).split(":")[0])
                 for t in inputs]
    except (AttributeError, ValueError, TypeError):
        specs = _sample_specs(source, options, "is a Keras model that records no inputs (a subclassed model)")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        specs = [tf.TensorSpec(s.shape, s.dtype, name=f"input_{i}") for i, s in enumerate(specs)]
    structure = getattr(model, "_inputs_struct", None)

    def call(*tensors: Any) -> list[Any]:
        packed = tf.nest.pack_sequence_as(structure, list(tensors)) if structure is not None else (
            tensors[0] if len(tensors) == 1 else list(tensors))
        return tf.nest.flatten(model(packed, training=False))

    with no_warnings():
        count = len(call(*[tf.zeros([1 if d is None else d for d in s.shape], s.dtype) for s in specs]))
    output_names = _output_names(model, count)
    _export(lambda *t: dict(zip(output_names, call(*t), strict=True)), specs, path, options, source)
    input_names = [spec.name for spec in specs]  # tf2onnx names the ONNX inputs after the specs

    def reference(feed: Feed) -> Feed:
        with no_warnings():
            outs = call(*[tf.constant(feed[name]) for name in input_names])
        return {name: _numpy(out) for name, out in zip(output_names, outs, strict=True)}

    import keras

    return _converted(path, "keras", reference, [f"loaded with Keras {keras.__version__}"], input_names)


def _signature(source: Path, loaded: Any, options: ConvertOptions) -> tuple[str, Any]:
    signatures = {k: v for k, v in loaded.signatures.items() if not k.startswith("_")}
    wanted = str(options.extra.get("signature") or "")
    if wanted:
        if wanted not in signatures:
            raise StageError(f"{source} has no signature {wanted!r}; it has: {', '.join(sorted(signatures)) or 'none'}")
        return wanted, signatures[wanted]
    if not signatures:
        raise StageError(f"{source} is a SavedModel without a serving signature: save it with "
                         "tf.saved_model.save(obj, DIR, signatures=...) or Keras's model.export(DIR)")
    name = SIGNATURE if SIGNATURE in signatures else sorted(signatures)[0]
    return name, signatures[name]


def _from_saved_model(source: Path, path: Path, options: ConvertOptions) -> Converted:
    try:
        with no_warnings():
            loaded = tf.saved_model.load(str(source))
    except Exception as exc:  # a damaged directory or an op this TensorFlow lacks
        raise StageError(f"{source} could not be loaded as a SavedModel ({type(exc).__name__}: {first_line(exc)})") from None
    name, function = _signature(source, loaded, options)
    _, kwargs = function.structured_input_signature
    keys = list(kwargs)
    specs = [tf.TensorSpec(kwargs[k].shape, kwargs[k].dtype, name=k) for k in keys]

    def call(*tensors: Any) -> dict[str, Any]:
        return dict(function(**dict(zip(keys, tensors, strict=True))))

    _export(call, specs, path, options, source)
    output_names = onnx_output_names(path)

    def reference(feed: Feed) -> Feed:  # tf2onnx names the ONNX inputs and outputs after the signature's
        outs = function(**{k: tf.constant(feed[k]) for k in keys})
        return {n: _numpy(outs[n]) for n in output_names if n in outs}

    return _converted(path, "tf-savedmodel", reference, [f"signature {name!r}"], keys)
