"""`deploy-model drift-reference` on a real data set: what it records, how it maps columns, and
the bad data it refuses (nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from deploy_model.common.errors import StageError
from deploy_model.model.drift_reference import REFERENCE_FILE, run_drift_reference


def test_reference_from_parquet_records_features_and_predictions(cancer: Any, tmp_path: Path) -> None:
    result = run_drift_reference(cancer.parquet, tmp_path, model=cancer.model, columns=cancer.names)
    doc = json.loads((tmp_path / REFERENCE_FILE).read_text())
    assert doc["format"] == "onnxserve-drift-reference/2" and doc["source"]["rows"] == 400
    assert [f["name"] for f in doc["features"]] == cancer.names
    assert [(f["input"], f["index"]) for f in doc["features"]] == [("input", j) for j in range(30)]
    radius = doc["features"][0]
    assert radius["kind"] == "numeric" and radius["null_rate"] == 0.0 and len(radius["edges"]) == 9
    # The fractions are those of the training column in the recorded bins (numpy on the same rows).
    edges = np.asarray(radius["edges"])
    counts = np.bincount(np.searchsorted(edges, cancer.train[:, 0], side="right"), minlength=10)
    assert np.allclose(radius["fractions"], counts / 400)
    assert np.allclose(edges, np.quantile(cancer.train[:, 0].astype(np.float64), np.linspace(0, 1, 11)[1:-1]))
    pred = doc["prediction"]
    assert pred["output"] == "label" and pred["kind"] == "categorical" and pred["categories"] == [0.0, 1.0]
    assert pred["frequencies"][1] == pytest.approx(cancer.target.mean(), abs=0.05)  # a good classifier
    assert result["prediction"]["rows"] == 400


def test_csv_with_a_categorical_a_null_and_the_label_left_out(cancer: Any, tmp_path: Path) -> None:
    cols = {n: cancer.train[:, j].astype(np.float64) for j, n in enumerate(cancer.names)}
    cols["mean radius"][:40] = np.nan  # 10% nulls
    grade = (cancer.train[:, 1] > np.median(cancer.train[:, 1])).astype(np.int64) + 1  # codes 1, 2
    cols["mean texture"] = grade
    table = pa.table({**cols, "target": cancer.target})
    csv = tmp_path / "train.csv"
    pacsv.write_csv(table, csv)
    # Without --columns the label column does not fit the 30-feature input: refused.
    with pytest.raises(StageError, match=r"31 columns, but input 'input' takes 30 features.*--columns"):
        run_drift_reference(csv, tmp_path / "a", model=cancer.model)
    assert not (tmp_path / "a").exists()
    run_drift_reference(csv, tmp_path / "b", model=cancer.model, columns=cancer.names, bins=5)
    doc = json.loads((tmp_path / "b" / REFERENCE_FILE).read_text())
    radius, texture = doc["features"][0], doc["features"][1]
    assert radius["null_rate"] == pytest.approx(0.1) and len(radius["fractions"]) == 5
    assert texture["kind"] == "categorical" and texture["categories"] == [1.0, 2.0]
    assert sum(texture["frequencies"]) == pytest.approx(1.0)


def test_npz_by_input_name_without_labels(cancer: Any, tmp_path: Path) -> None:
    npz = tmp_path / "valid.npz"
    np.savez(npz, input=cancer.test)
    run_drift_reference(npz, tmp_path, model=cancer.model)
    doc = json.loads((tmp_path / REFERENCE_FILE).read_text())
    assert [f["name"] for f in doc["features"]][:2] == ["input[0]", "input[1]"]
    assert doc["prediction"]["rows"] == len(cancer.test)


def test_without_a_model_columns_map_by_order(cancer: Any, tmp_path: Path) -> None:
    result = run_drift_reference(cancer.parquet, tmp_path, columns=cancer.names[:3])
    doc = json.loads((tmp_path / REFERENCE_FILE).read_text())
    assert [(f["name"], f["input"], f["index"]) for f in doc["features"]] == [
        (n, None, j) for j, n in enumerate(cancer.names[:3])]
    assert doc["prediction"] is None and doc["model"] is None
    assert "no --model" in result["summary"]["prediction"]


def _table(tmp_path: Path, name: str, columns: dict[str, pa.Array]) -> Path:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", r"--columns names \['no such column'\], which train.parquet does not have"),
    ("text", r"column 'mean radius' is string, not numeric"),
    ("empty", r"is empty \(0 rows"),
    ("allnull", r"column 'mean radius' holds no values"),
    ("suffix", r"unknown type .txt; expected one of .parquet"),
    ("infinite", r"feature 'mean radius' holds infinite values"),
])
def test_bad_data_is_refused_and_nothing_written(cancer: Any, tmp_path: Path, case: str, message: str) -> None:
    cols: dict[str, pa.Array] = {n: pa.array(cancer.train[:, j]) for j, n in enumerate(cancer.names)}
    columns = cancer.names
    data = tmp_path / "train.parquet"
    if case == "missing":
        columns = [*cancer.names[:-1], "no such column"]
        data = cancer.parquet
    elif case == "text":
        cols["mean radius"] = pa.array([f"{v:.2f}" for v in cancer.train[:, 0]])
    elif case == "empty":
        cols = {n: pa.array([], pa.float32()) for n in cancer.names}
    elif case == "allnull":
        cols["mean radius"] = pa.nulls(400, pa.float32())
    elif case == "infinite":
        values = cancer.train[:, 0].copy()
        values[3] = np.inf
        cols["mean radius"] = pa.array(values)
    elif case == "suffix":
        data = tmp_path / "train.txt"
        data.write_text("a,b\n1,2\n")
    if case not in ("missing", "suffix"):
        pq.write_table(pa.table(cols), data)
    out = tmp_path / "out"
    with pytest.raises(StageError, match=message):
        run_drift_reference(data, out, model=cancer.model, columns=columns)
    assert not (out / REFERENCE_FILE).exists()


def test_cli_json_and_exit_codes(cancer: Any, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "deploy_model", "drift-reference"]
    ok = subprocess.run([*cli, str(cancer.parquet), "--model", str(cancer.model), "--out", str(tmp_path),
                         "--columns", ",".join(cancer.names), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] and doc["reference"] == str(tmp_path / REFERENCE_FILE) and len(doc["features"]) == 30
    bad = subprocess.run([*cli, str(cancer.parquet), "--model", str(cancer.model), "--out", str(tmp_path / "x"),
                          "--json"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    assert bad.stderr.count("\n") == 1 and "--columns" in bad.stderr
