"""XGBoost native model files (.json, .ubj) -> ONNX with onnxmltools; no pickle involved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxmltools
import xgboost

from deploy_model.model.convert import tree_common as tree
from deploy_model.model.convert.conversion import Converted, ConvertOptions, Feed
from deploy_model.model.convert.tree_common import INPUT

CLASSIFYING = ("binary:", "multi:")


def _objective(booster: xgboost.Booster) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    booster = xgboost.Booster()
    try:
        booster.load_model(str(source))
    except xgboost.core.XGBoostError as exc:
        raise tree.unreadable(source, "XGBoost", exc) from None
    objective = _objective(booster)
    classifier = objective.startswith(CLASSIFYING)
    if objective.startswith(("rank:", "survival:")):
        raise tree.no_onnxmltools_converter(source, "XGBoost", objective)
    model = xgboost.XGBClassifier() if classifier else xgboost.XGBRegressor()
    model.load_model(str(source))
    notes: list[str] = []
    features = tree.check_features(booster.num_features(), source, "XGBoost")
    path, outputs = tree.onnxmltools_convert(onnxmltools.convert_xgboost, model, features, workdir, options, notes)

    def reference(feed: Feed) -> Feed:
        x = feed[INPUT]
        if classifier:
            return tree.classifier_outputs(outputs, model.predict(x), model.predict_proba(x))
        return {outputs[0]: np.asarray(model.predict(x))}

    return tree.tree_converted(path, "xgboost", xgboost.__version__, ("onnxmltools", onnxmltools.__version__), INPUT,
                          features, outputs, classifier, reference, [f"objective {objective}", *notes])
