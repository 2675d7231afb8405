"""What convert refuses, in one line: a pickle without the trust flag, an unknown format, a
conversion whose answers differ from the original's (with the figures), and nothing is written."""

from __future__ import annotations

import pickle
import re

import pytest
import skops.io as sio
from convert_helpers import run_cli, sklearn_pipeline, training_data
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class _WritesAFile:
    """Unpickling this runs exec(), which writes the marker file: what a hostile pickle does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle code ran')",))


def test_pickle_is_not_loaded_without_the_trust_flag(tmp_path):
    marker = tmp_path / "pwned.txt"
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(_WritesAFile(str(marker))))
    proc = run_cli("convert", model, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert "loading a pickle runs any code it holds: it was not loaded" in proc.stderr
    assert "--trust-pickle" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists(), "the pickle was loaded"
    assert not (tmp_path / "out").exists()
    # inspect and deploy refuse it the same way (they convert non-ONNX input).
    proc = run_cli("inspect", model, "--out", tmp_path / "out2")
    assert proc.returncode == 1 and "it was not loaded" in proc.stderr and not marker.exists()


def test_a_trusted_scikit_learn_pickle_converts(tmp_path):
    import joblib

    x, binary, _, _ = training_data()
    joblib.dump(make_pipeline(StandardScaler(), LinearRegression()).fit(x, binary.astype(float)), tmp_path / "m.joblib")
    proc = run_cli("convert", tmp_path / "m.joblib", "--out", tmp_path / "out", "--trust-pickle", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "converted" / "m.onnx").is_file()


def test_unknown_format_is_refused_in_one_line(tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01not a model at all" * 10)
    proc = run_cli("convert", blob, "--json")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unsupported model format" in lines[0] and ".skops" in lines[0]
    assert '"ok": false' in proc.stdout
    assert run_cli("convert", tmp_path / "missing.skops").returncode == 1


def test_a_conversion_that_disagrees_is_refused_with_its_figures(tmp_path, monkeypatch):
    """A deliberately broken converter (float16_converter: skl2onnx's real output forced through
    float16, and registered for .skops files here) loses about 2^-11 of each value: beyond the
    float32 tolerance, so the conversion is refused with the figures and nothing is written."""
    from deploy_model.common.errors import StageError
    from deploy_model.model.convert import registry
    from deploy_model.model.convert.conversion import ConvertOptions
    from deploy_model.model.convert.stage import run_convert

    x, _, _, target = training_data()
    sio.dump(make_pipeline(StandardScaler(), LinearRegression()).fit(x, 100.0 * target), tmp_path / "price.skops")
    honest = registry.CONVERTERS["sklearn-skops"]
    out = tmp_path / "out"
    monkeypatch.setitem(registry.CONVERTERS, "sklearn-skops", registry.ConverterEntry(
        "sklearn-skops", "float16_converter", honest.group, honest.packages, "skl2onnx, output forced to float16"))
    with pytest.raises(StageError) as refused:
        run_convert(tmp_path / "price.skops", out, ConvertOptions())
    text = str(refused.value)
    assert "disagrees with the original model on 64 rows" in text
    # float32's atol (1e-5) scaled by the output's largest magnitude (prices in the hundreds).
    assert "max abs err" in text and re.search(r"\d+ values beyond atol 0\.00[1-9]\d* \+ rtol 0\.0001", text), text
    assert not out.exists(), "a refused conversion writes nothing"
    monkeypatch.setitem(registry.CONVERTERS, "sklearn-skops", honest)
    assert run_convert(tmp_path / "price.skops", out, ConvertOptions())["conversion"]["parity"]["ok"]


def test_convert_of_an_onnx_file_says_so(tmp_path, tabular_model):
    proc = run_cli("convert", tabular_model)
    assert proc.returncode == 1 and "already ONNX" in proc.stderr


def test_inspect_converts_a_skops_model_and_records_it(tmp_path):
    model = sklearn_pipeline(tmp_path / "churn.skops")
    proc = run_cli("inspect", model, "--out", tmp_path / "dep", "--runs", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    profile = json.loads((tmp_path / "dep" / "model-profile.json").read_text())
    assert profile["model"]["name"] == "churn" and profile["model"]["file"] == "churn.onnx"
    assert profile["conversion"]["source"]["format"] == "sklearn-skops" and profile["conversion"]["parity"]["ok"]
    assert "scikit-learn (skops) -> ONNX opset" in json.loads(proc.stdout)["summary"]["conversion"]
