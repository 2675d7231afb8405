"""scikit-learn models from skops files converted with skl2onnx, each with its parity proof."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from convert_helpers import FEATURES, read_json, sklearn_pipeline, training_data
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import ConvertOptions
from deploy_model.model.convert.stage import run_convert


@pytest.mark.parametrize("zipmap", [False, True])
def test_pipeline_classifier_converts_with_parity(tmp_path, zipmap):
    model = sklearn_pipeline(tmp_path / "churn.skops")
    result = run_convert(model, tmp_path / "out", ConvertOptions(zipmap=zipmap))
    record = read_json(tmp_path / "out" / "conversion.json")
    assert record == result["conversion"]
    assert record["source"]["format"] == "sklearn-skops" and record["converter"]["name"] == "skl2onnx"
    assert 0 < record["opset"] <= 17 and record["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", FEATURES]}]
    parity = record["parity"]
    assert parity["ok"] and parity["rows"] == 64 and parity["max_abs_err"] < 1e-4
    by_kind = {o["kind"]: o for o in parity["outputs"]}
    assert by_kind["label"]["label_mismatches"] == 0
    assert by_kind["probability"]["top1_agreement"] == 1.0 and by_kind["probability"]["violations"] == 0
    # The written file really is what the record says: onnxruntime agrees with the sklearn model.
    import onnxruntime as ort

    x, _, _, _ = training_data(20)
    session = ort.InferenceSession(str(tmp_path / "out" / "converted" / "churn.onnx"), providers=["CPUExecutionProvider"])
    labels = session.run([by_kind["label"]["name"]], {"input": x})[0]
    assert list(labels) == list(sio.load(model).predict(x))


def test_regressor_converts_and_figures_are_deterministic(tmp_path):
    x, _, _, target = training_data()
    sio.dump(Ridge(alpha=0.5).fit(x, target), tmp_path / "price.skops")
    first = run_convert(tmp_path / "price.skops", tmp_path / "a", ConvertOptions())["conversion"]["parity"]
    second = run_convert(tmp_path / "price.skops", tmp_path / "b", ConvertOptions())["conversion"]["parity"]
    assert first == second, "the same model and inputs give the same figures"
    (out,) = first["outputs"]
    assert out["kind"] == "value" and out["violations"] == 0 and out["max_abs_err"] < 1e-4


def test_skops_types_outside_the_trusted_set_are_listed_then_trusted_by_name(tmp_path):
    x, _, _, target = training_data()
    sio.dump(GradientBoostingRegressor(n_estimators=15, random_state=0).fit(x, target), tmp_path / "gbr.skops")
    with pytest.raises(StageError) as refused:
        run_convert(tmp_path / "gbr.skops", tmp_path / "out", ConvertOptions())
    assert "sklearn.tree._tree.Tree" in str(refused.value) and "--trust-type" in str(refused.value)
    assert not (tmp_path / "out").exists(), "a refusal writes nothing"
    result = run_convert(tmp_path / "gbr.skops", tmp_path / "out",
                         ConvertOptions(trusted_types=("sklearn.tree._tree.Tree",)))
    assert result["conversion"]["parity"]["ok"]


def test_sample_rows_are_the_parity_inputs(tmp_path):
    model = sklearn_pipeline(tmp_path / "churn.skops")
    x, _, _, _ = training_data(9)
    np.save(tmp_path / "rows.npy", x)
    parity = run_convert(model, tmp_path / "out", ConvertOptions(sample=tmp_path / "rows.npy"))["conversion"]["parity"]
    assert parity["rows"] == 9 and parity["inputs"].startswith("sample ")
