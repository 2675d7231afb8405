"""Edge plans quantize first: the bundle ships the INT8 model that passed the agreement check."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from deploy_model.bundle.render import run_render
from deploy_model.model.inspection import run_inspect
from deploy_model.model.quantize import run_quantize
from deploy_model.plan.planner import run_plan


def _edge_plan(model: Path, out: Path) -> Path:
    local = out.parent / "models" / model.name
    local.parent.mkdir(parents=True)
    shutil.copyfile(model, local)
    run_inspect(local, out, runs=3, large_batch=4)
    run_plan(out, None, {"target": "edge"})
    return out


def test_edge_bundle_carries_the_accepted_int8_model(cnn_model: Path, tmp_path: Path) -> None:
    directory = _edge_plan(cnn_model, tmp_path / "edge")
    # The CNN's INT8 model agrees with FP32 on every row but is slower on this CPU (no VNNI):
    # quantize refuses it unless told a slower model is acceptable, as an edge user may say.
    run_quantize(None, directory, samples=64, runs=20, allow_slower=True, time_budget=20.0)
    figures = json.loads((directory / "quantization.json").read_text())
    assert figures["verdict"] == "accepted", figures
    result = run_render(directory)
    shipped = directory / "model" / "image-cnn.int8.onnx"
    assert shipped.is_file() and not result.get("warnings")
    digest = hashlib.sha256((directory / figures["quantized_model"]).read_bytes()).hexdigest()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == digest


def test_edge_bundle_without_quantization_says_so(cnn_model: Path, tmp_path: Path) -> None:
    directory = _edge_plan(cnn_model, tmp_path / "edge")
    result = run_render(directory)
    assert not (directory / "model" / "image-cnn.int8.onnx").exists()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert any("no quantization.json" in w for w in manifest["warnings"]), manifest["warnings"]
    assert result["summary"]["warnings"] == 1
