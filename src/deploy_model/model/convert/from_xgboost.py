"""XGBoost native model files (.json, .ubj) -> ONNX with onnxmltools; no pickle involved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxmltools
import xgboost

from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed
from deploy_model.model.convert.tree_common import (
    INPUT,
    check_features,
    classifier_outputs,
    no_onnxmltools_converter,
    onnxmltools_convert,
    tree_converted,
    unreadable,
)

CLASSIFYING = ("binary:", "multi:")


def _objective(booster: xgboost.Booster) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    booster = xgboost.Booster()
    try:
        booster.load_model(str(source))
    except xgboost.core.XGBoostError as exc:
        raise unreadable(source, "XGBoost", exc) from None
    objective = _objective(booster)
    classifier = objective.startswith(CLASSIFYING)
    if objective.startswith(("rank:", "survival:")):
        raise no_onnxmltools_converter(source, "XGBoost", objective)
    model = xgboost.XGBClassifier() if classifier else xgboost.XGBRegressor()
    model.load_model(str(source))
    notes: list[str] = []
    features = check_features(booster.num_features(), source, "XGBoost")
    path, outputs = onnxmltools_convert(onnxmltools.convert_xgboost, model, features, workdir, options, notes)

    def reference(feed: Feed) -> Feed:
        x = feed[INPUT]
        if classifier:
            return classifier_outputs(outputs, model.predict(x), model.predict_proba(x))
        return {outputs[0]: np.asarray(model.predict(x))}

    return tree_converted(path, "xgboost", xgboost.__version__, ("onnxmltools", onnxmltools.__version__), INPUT,
                          features, outputs, classifier, reference, [f"objective {objective}", *notes])
