"""XGBoost native model files (.json, .ubj) -> ONNX with onnxmltools; no pickle involved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxmltools
import xgboost
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

CLASSIFYING = ("binary:", "multi:")


def _objective(booster: xgboost.Booster) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    booster = xgboost.Booster()
    try:
        booster.load_model(str(source))
    except xgboost.core.XGBoostError as exc:
        raise StageError(f"{source} is not a readable XGBoost model: {str(exc).strip().splitlines()[0][:200]}") from None
    objective = _objective(booster)
    classifier = objective.startswith(CLASSIFYING)
    if objective.startswith(("rank:", "survival:")):
        raise StageError(f"{source}: XGBoost objective {objective} has no ONNX converter in onnxmltools "
                         "(classification and regression objectives are supported)")
    model = xgboost.XGBClassifier() if classifier else xgboost.XGBRegressor()
    model.load_model(str(source))
    notes: list[str] = []
    features = check_features(booster.num_features(), source, "XGBoost")
    onx = onnxmltools.convert_xgboost(model, initial_types=[(INPUT, FloatTensorType([None, features]))],
                                      target_opset=onnxmltools_opset(options.opset, options.target_opset, notes))
    path = workdir / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    outputs = [o.name for o in onx.graph.output]

    def reference(feed: Feed) -> Feed:
        x = feed[INPUT]
        if classifier:
            return classifier_outputs(outputs, model.predict(x), model.predict_proba(x))
        return {outputs[0]: np.asarray(model.predict(x))}

    return Converted(
        onnx_path=path, source_format="xgboost", converter="onnxmltools", converter_version=onnxmltools.__version__,
        opset=onnx_opset(path), inputs=[tensor_input(INPUT, "float32", ["batch", features])], reference=reference,
        framework=f"xgboost {xgboost.__version__}", output_kinds=output_kinds(outputs, classifier),
        notes=[f"objective {objective}", *notes],
    )
