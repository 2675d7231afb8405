"""XGBoost, LightGBM and CatBoost native model files converted with their parity proofs."""

from __future__ import annotations

import catboost
import lightgbm
import pytest
import xgboost
from convert_helpers import FEATURES, training_data

from deploy_model.model.convert.conversion import ConvertOptions
from deploy_model.model.convert.stage import run_convert


def _xgb(path, task):
    x, binary, three, target = training_data()
    model = {"binary": xgboost.XGBClassifier(n_estimators=12, max_depth=3).fit(x, binary),
             "multi": xgboost.XGBClassifier(n_estimators=12, max_depth=3).fit(x, three),
             "regression": xgboost.XGBRegressor(n_estimators=12, max_depth=3).fit(x, target)}[task]
    model.save_model(str(path))


def _lgb(path, task):
    x, binary, three, target = training_data()
    estimator = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
    y = {"binary": binary, "multi": three, "regression": target}[task]
    estimator(n_estimators=12, verbose=-1, random_state=0).fit(x, y).booster_.save_model(str(path))


def _cb(path, task):
    x, binary, three, target = training_data()
    estimator = catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier
    y = {"binary": binary, "multi": three, "regression": target}[task]
    # allow_writing_files=False: CatBoost otherwise leaves catboost_info/ in the working directory.
    estimator(iterations=12, depth=3, verbose=0, random_seed=0, thread_count=1,
              allow_writing_files=False).fit(x, y).save_model(str(path))


CASES = [
    ("model.json", _xgb, "binary", "xgboost-json"),
    ("model.ubj", _xgb, "multi", "xgboost-ubj"),
    ("model.json", _xgb, "regression", "xgboost-json"),
    ("model.txt", _lgb, "binary", "lightgbm-text"),
    ("model.txt", _lgb, "multi", "lightgbm-text"),
    ("model.txt", _lgb, "regression", "lightgbm-text"),
    ("model.cbm", _cb, "binary", "catboost-cbm"),
    ("model.cbm", _cb, "multi", "catboost-cbm"),
    ("model.cbm", _cb, "regression", "catboost-cbm"),
]


@pytest.mark.parametrize(("filename", "build", "task", "fmt"), CASES, ids=[f"{c[3]}-{c[2]}" for c in CASES])
def test_tree_model_converts_with_parity(tmp_path, filename, build, task, fmt):
    build(tmp_path / filename, task)
    record = run_convert(tmp_path / filename, tmp_path / "out", ConvertOptions())["conversion"]
    assert record["source"]["format"] == fmt and record["inputs"][0]["shape"] == ["batch", FEATURES]
    parity = record["parity"]
    assert parity["ok"] and parity["rows"] == 64
    kinds = {o["kind"] for o in parity["outputs"]}
    if task == "regression":
        assert kinds == {"value"} and parity["max_abs_err"] < 1e-3
    else:
        assert kinds == {"label", "probability"}
        for output in parity["outputs"]:
            assert output.get("label_mismatches", 0) == 0 and output.get("top1_agreement", 1.0) == 1.0
    assert (tmp_path / "out" / "converted" / "model.onnx").is_file()
