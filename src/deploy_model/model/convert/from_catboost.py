"""CatBoost .cbm model files -> ONNX with CatBoost's own exporter; no pickle involved."""

from __future__ import annotations

from pathlib import Path

import catboost
import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed
from deploy_model.model.convert.tree_common import (
    check_features,
    classifier_outputs,
    tree_converted,
    unreadable,
)

INPUT = "features"  # the input name CatBoost's exporter writes


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    model = catboost.CatBoost()
    try:
        model.load_model(str(source), format="cbm")
    except catboost.CatBoostError as exc:
        raise unreadable(source, "CatBoost", exc) from None
    if model.get_cat_feature_indices() or model.get_text_feature_indices():
        raise StageError(f"{source}: the CatBoost model has categorical or text features, which its ONNX "
                         "exporter does not support (numeric features only)")
    loss = str(model.get_all_params().get("loss_function", ""))
    classifier = len(getattr(model, "classes_", None) if getattr(model, "classes_", None) is not None else []) > 0
    features = check_features(len(model.feature_names_), source, "CatBoost")
    path = workdir / "model.onnx"
    # CatBoost chooses the opset of its own exporter; --opset does not apply to it (noted).
    model.save_model(str(path), format="onnx")
    import onnx

    outputs = [o.name for o in onnx.load(str(path)).graph.output]
    notes = [f"loss {loss}"]
    if options.opset:
        notes.append(f"--opset {options.opset} ignored: CatBoost's exporter picks its own")
    predictor = catboost.CatBoostClassifier() if classifier else catboost.CatBoostRegressor()
    predictor.load_model(str(source), format="cbm")

    def reference(feed: Feed) -> Feed:
        x = feed[INPUT]
        if classifier:
            return classifier_outputs(outputs, np.asarray(predictor.predict(x)).reshape(-1), predictor.predict_proba(x))
        return {outputs[0]: np.asarray(predictor.predict(x))}

    return tree_converted(path, "catboost", catboost.__version__, ("catboost", catboost.__version__), INPUT,
                          features, outputs, classifier, reference, notes)
