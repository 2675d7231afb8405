"""LightGBM text model files -> ONNX with onnxmltools; no pickle involved."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import (
    Converted,
    ConvertOptions,
    Feed,
    onnx_opset,
    tensor_input,
)
from deploy_model.model.convert.tree_common import (
    INPUT,
    check_features,
    classifier_outputs,
    onnxmltools_opset,
    output_kinds,
)

CLASSIFYING = ("binary", "multiclass", "multiclassova", "cross_entropy")


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    try:
        booster = lightgbm.Booster(model_file=str(source))
    except lightgbm.basic.LightGBMError as exc:
        raise StageError(f"{source} is not a readable LightGBM model: {str(exc).strip().splitlines()[0][:200]}") from None
    objective = str(booster.dump_model(num_iteration=0).get("objective", "")).split()[0]
    classifier = objective.startswith(CLASSIFYING)
    if objective.startswith(("lambdarank", "rank_xendcg")):
        raise StageError(f"{source}: LightGBM objective {objective} has no ONNX converter in onnxmltools "
                         "(classification and regression objectives are supported)")
    notes: list[str] = []
    features = check_features(booster.num_feature(), source, "LightGBM")
    onx = onnxmltools.convert_lightgbm(booster, initial_types=[(INPUT, FloatTensorType([None, features]))],
                                       target_opset=onnxmltools_opset(options.opset, options.target_opset, notes), zipmap=options.zipmap)
    path = workdir / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    outputs = [o.name for o in onx.graph.output]

    def reference(feed: Feed) -> Feed:
        scores = np.asarray(booster.predict(feed[INPUT]))
        if classifier:
            labels = (scores > 0.5).astype(np.int64) if scores.ndim == 1 else np.argmax(scores, axis=1)
            return classifier_outputs(outputs, labels, scores)
        return {outputs[0]: scores}

    return Converted(
        onnx_path=path, source_format="lightgbm", converter="onnxmltools", converter_version=onnxmltools.__version__,
        opset=onnx_opset(path), inputs=[tensor_input(INPUT, "float32", ["batch", features])], reference=reference,
        framework=f"lightgbm {lightgbm.__version__}", output_kinds=output_kinds(outputs, classifier),
        notes=[f"objective {objective}", *notes],
    )
