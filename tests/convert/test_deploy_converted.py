"""`deploy` of a non-ONNX model: converted, served, measured, and named in DEPLOYMENT.md."""

from __future__ import annotations

import json

import lightgbm
import pytest
from convert_helpers import REPO, run_cli, training_data

pytestmark = pytest.mark.slow  # a whole deploy: a real server, smoke and a short load test


def test_deploy_of_a_lightgbm_model_reaches_a_report_naming_the_conversion(tmp_path):
    x, binary, _, _ = training_data()
    model = tmp_path / "fraud.txt"
    lightgbm.LGBMClassifier(n_estimators=12, verbose=-1, random_state=0).fit(x, binary).booster_.save_model(str(model))
    out = tmp_path / "dep"
    proc = run_cli("deploy", model, "--answers", REPO / "examples" / "answers.yaml", "--out", out,
                   "--concurrency", "1", "--seconds", "1", "--json", timeout=900)
    assert proc.returncode in (0, 1), proc.stderr  # GO, or an honest NO-GO with its report
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    profile = json.loads((out / "model-profile.json").read_text())
    assert profile["conversion"]["source"]["format"] == "lightgbm-text" and profile["conversion"]["parity"]["ok"]
    assert (out / "conversion.json").is_file() and (out / "converted" / "fraud.onnx").is_file()
    report = (out / "DEPLOYMENT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| Model format"))
    assert "LightGBM (text model) -> ONNX" in row and "onnxmltools" in row and "parity max abs err" in row
    assert "on 64 rows" in row
