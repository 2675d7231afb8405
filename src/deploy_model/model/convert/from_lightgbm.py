"""LightGBM text model files -> ONNX with onnxmltools; no pickle involved."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import onnxmltools

from deploy_model.model.convert import tree_common as tree
from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed
from deploy_model.model.convert.tree_common import INPUT

CLASSIFYING = ("binary", "multiclass", "multiclassova", "cross_entropy")


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    try:
        booster = lightgbm.Booster(model_file=str(source))
    except lightgbm.basic.LightGBMError as exc:
        raise tree.unreadable(source, "LightGBM", exc) from None
    objective = str(booster.dump_model(num_iteration=0).get("objective", "")).split()[0]
    classifier = objective.startswith(CLASSIFYING)
    if objective.startswith(("lambdarank", "rank_xendcg")):
        raise tree.no_onnxmltools_converter(source, "LightGBM", objective)
    notes: list[str] = []
    features = tree.check_features(booster.num_feature(), source, "LightGBM")
    path, outputs = tree.onnxmltools_convert(onnxmltools.convert_lightgbm, booster, features, workdir, options, notes,
                                        zipmap=options.zipmap)

    def reference(feed: Feed) -> Feed:
        scores = np.asarray(booster.predict(feed[INPUT]))
        if classifier:
            labels = (scores > 0.5).astype(np.int64) if scores.ndim == 1 else np.argmax(scores, axis=1)
            return tree.classifier_outputs(outputs, labels, scores)
        return {outputs[0]: scores}

    return tree.tree_converted(path, "lightgbm", lightgbm.__version__, ("onnxmltools", onnxmltools.__version__), INPUT,
                          features, outputs, classifier, reference, [f"objective {objective}", *notes])
