"""PyTorch -> ONNX (model/convert/from_torch): real torch, real torch.onnx exporters, real onnxruntime.

Models: the TorchScript VAD network shipped in the pinned silero-vad wheel (dev extras; read from
site-packages, nothing downloaded at test time) and torch.export programs built here from a
fixed seed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import Converted, ConvertOptions
from deploy_model.model.convert.parity import TOLERANCES, prove_parity, run_onnx, run_reference
from deploy_model.model.convert.stage import run_convert

torch = pytest.importorskip("torch")
from deploy_model.model.convert import from_torch  # noqa: E402  (imports torch)

VAD_SAMPLES = 512 + 64  # the 16 kHz network's window plus the context the wrapper prepends


def _vad_jit() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    assert spec is not None and spec.submodule_search_locations, "silero-vad (dev extras) is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"


class SmallCnn(torch.nn.Module):
    """Conv -> ReLU -> global mean -> Linear -> softmax: four class probabilities per image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(torch.relu(self.conv(image)).mean(dim=(2, 3))), dim=-1)


class LogAddExp(torch.nn.Module):
    """torch.logaddexp factors the larger term out, so log(e^150 + e^151) is 151.3; its ONNX export
    is Log(Exp(a) + Exp(b)), which overflows float32 past e^88: an op whose export differs."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scores = image * 150.0
        return torch.logaddexp(scores, scores + 1.0)


def _save_program(module: torch.nn.Module, path: Path, dynamic: bool = True) -> Path:
    torch.manual_seed(0)
    example = (torch.rand(2, 3, 16, 16),)
    shapes = {"image": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic else None
    torch.export.save(torch.export.export(module.eval(), example, dynamic_shapes=shapes), str(path))
    return path


@pytest.fixture(scope="module")
def cnn_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return _save_program(SmallCnn(), tmp_path_factory.mktemp("torch") / "cnn.pt2")


def vad_network(folder: Path) -> tuple[Path, Path]:
    """The wheel's stateless 16 kHz network (the archive's `_model`, saved alone) and a sample."""
    network = folder / "vad16k.pt"
    torch.jit.save(torch.jit.load(str(_vad_jit()), map_location="cpu")._model, str(network))
    rng = np.random.default_rng(0)
    t = np.arange(VAD_SAMPLES) / 16000.0
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal((3, VAD_SAMPLES))
    sample = folder / "sample.npz"
    np.savez(sample, x=speech.astype(np.float32), state=(0.1 * rng.standard_normal((2, 3, 128))).astype(np.float32))
    return network, sample


@pytest.fixture(scope="module")
def vad_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return vad_network(tmp_path_factory.mktemp("vad"))


@pytest.fixture(scope="module")
def vad_converted(vad_script: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Converted:
    network, sample = vad_script
    return from_torch.convert(network, tmp_path_factory.mktemp("vad-out"), ConvertOptions(sample=sample))


def _batch_errors(converted: Converted, feeds: list[dict[str, np.ndarray]]) -> list[float]:
    """Max abs difference between onnxruntime and torch on each feed (shapes checked equal)."""
    errors = []
    for feed in feeds:
        got, want = run_onnx(converted, feed), run_reference(converted, feed)
        assert set(got) == set(want)
        for name in got:
            assert got[name].shape == want[name].shape, name
        errors.append(max(float(np.abs(got[n] - want[n]).max()) for n in got))
    return errors


def test_the_wheels_torchscript_network_converts_with_parity(vad_converted: Converted, vad_script: tuple[Path, Path]) -> None:
    converted = vad_converted
    # TS2EP cannot take its control flow, so the TorchScript exporter did it, and says why.
    assert converted.converter == "torch.onnx.export (TorchScript exporter)"
    assert any("dynamo exporter could not take it" in note for note in converted.notes)
    assert converted.opset == 17 and converted.source_format == "torchscript"
    assert converted.inputs == [{"name": "x", "dtype": "float32", "shape": ["batch", VAD_SAMPLES]},
                                {"name": "state", "dtype": "float32", "shape": [2, "batch", 128]}]
    parity = prove_parity(converted, ConvertOptions(sample=vad_script[1]), "TorchScript")
    assert parity["ok"] and parity["rows"] == 3 and parity["inputs"].startswith("sample")
    assert [o["name"] for o in parity["outputs"]] == ["output_0", "output_1"]
    assert 0 < parity["max_abs_err"] < TOLERANCES["float32"][0]


def test_the_converted_torchscript_network_takes_any_batch(vad_converted: Converted) -> None:
    rng = np.random.default_rng(1)
    feeds = [{"x": (0.1 * rng.standard_normal((b, VAD_SAMPLES))).astype(np.float32),
              "state": (0.1 * rng.standard_normal((2, b, 128))).astype(np.float32)} for b in (1, 5)]
    assert max(_batch_errors(vad_converted, feeds)) < TOLERANCES["float32"][0]


class Mlp(torch.nn.Module):
    """Two linear layers: straight-line code that torch's TorchScript-to-ExportedProgram converter takes."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(6, 16)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(features)))


def test_a_scripted_module_goes_through_dynamo_with_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    scripted = tmp_path / "mlp.pt"
    torch.jit.save(torch.jit.script(Mlp().eval()), str(scripted))
    sample = tmp_path / "rows.npy"
    np.save(sample, np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    converted = from_torch.convert(scripted, tmp_path, ConvertOptions(sample=sample))
    assert converted.converter == "torch.onnx.export (dynamo exporter)"
    assert any("TS2EPConverter" in note for note in converted.notes)
    assert converted.inputs == [{"name": "features", "dtype": "float32", "shape": ["batch", 6]}]
    assert prove_parity(converted, ConvertOptions(sample=sample), "TorchScript")["ok"]
    rng = np.random.default_rng(3)
    feeds = [{"features": rng.standard_normal((b, 6)).astype(np.float32)} for b in (1, 5)]
    assert max(_batch_errors(converted, feeds)) < TOLERANCES["float32"][0]


def test_the_wheels_stateful_wrapper_is_refused_with_why(tmp_path: Path) -> None:
    with pytest.raises(StageError) as refused:
        from_torch.convert(_vad_jit(), tmp_path, ConvertOptions())
    message = str(refused.value)
    assert "\n" not in message
    assert "non-tensor arguments sr (int)" in message and "_state" in message and "_context" in message
    assert not list(tmp_path.iterdir())


def test_torchscript_without_a_sample_asks_for_one(vad_script: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"records no input shapes or dtypes: pass --sample FILE .*arguments x, state"):
        from_torch.convert(vad_script[0], tmp_path, ConvertOptions())


@pytest.fixture(scope="module")
def cnn_converted(cnn_program: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    return from_torch.convert(cnn_program, tmp_path_factory.mktemp("cnn-out"), ConvertOptions())


def test_a_torch_export_program_converts_with_dynamo_and_parity(cnn_converted: Converted) -> None:
    converted = cnn_converted
    assert converted.converter == "torch.onnx.export (dynamo exporter)"
    assert converted.converter_version == torch.__version__.split("+")[0]
    assert converted.opset == 18 and any("opset 18, not 17" in note for note in converted.notes)
    assert converted.inputs == [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 16, 16]}]
    parity = prove_parity(converted, ConvertOptions(), "torch.export")
    assert parity["ok"] and parity["rows"] == 64 and parity["inputs"].startswith("generated")
    assert parity["max_abs_err"] < TOLERANCES["float32"][0]


def test_the_converted_program_takes_batch_1_and_5(cnn_converted: Converted) -> None:
    rng = np.random.default_rng(2)
    feeds = [{"image": rng.random((b, 3, 16, 16), dtype=np.float32)} for b in (1, 5)]
    assert max(_batch_errors(cnn_converted, feeds)) < TOLERANCES["float32"][0]


@pytest.mark.slow
def test_the_convert_verb_writes_the_onnx_model_and_its_record(cnn_program: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    done = subprocess.run([sys.executable, "-m", "deploy_model", "convert", str(cnn_program), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # torch.onnx's progress lines went to stderr, not into the JSON
    record = json.loads((out / "conversion.json").read_text())
    assert result["conversion"]["onnx"]["sha256"] == record["onnx"]["sha256"]
    assert record["source"]["format"] == "torch-export" and record["parity"]["ok"]
    assert record["converter"]["name"] == "torch.onnx.export (dynamo exporter)" and record["opset"] == 18
    assert (out / "converted" / "cnn.onnx").is_file()
    assert "torchvision" not in done.stderr  # the exporter's registry noise is silenced


def test_an_op_whose_export_differs_is_refused_with_its_figures(tmp_path: Path) -> None:
    program = _save_program(LogAddExp(), tmp_path / "logaddexp.pt2")
    out = tmp_path / "deploy"
    with pytest.raises(StageError) as refused:
        run_convert(program, out, ConvertOptions())
    message = str(refused.value)
    assert "conversion disagrees with the original model on 64 rows" in message and "nothing written" in message
    figure = float(message.split("output output (value, float32): max abs err ")[1].split(",")[0])
    assert figure == float("inf")  # ONNX overflowed where torch did not: not a rounding difference
    assert not out.exists()


def test_a_state_dict_and_a_pickled_module_are_refused_unloaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "weights.pt"
    torch.save(SmallCnn().state_dict(), weights)
    with pytest.raises(StageError, match=r"a PyTorch state dict \(4 tensors, e.g. 'conv.weight'\): weights without "
                                         r"the model's code cannot be converted; .*torch.export.save"):
        run_convert(weights, tmp_path / "deploy", ConvertOptions())

    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    pickled = tmp_path / "module.pt"
    torch.save({"model": Payload()}, pickled)
    with pytest.raises(StageError, match=r"pickles a Python object \(exec, .*it was not unpickled"):
        run_convert(pickled, tmp_path / "deploy", ConvertOptions())
    assert not marker.exists()
    assert not (tmp_path / "deploy").exists()


@pytest.mark.slow
def test_a_program_saved_with_a_static_batch_says_so(tmp_path: Path) -> None:
    torch.manual_seed(0)
    converted = from_torch.convert(_save_program(SmallCnn(), tmp_path / "static.pt2", dynamic=False), tmp_path,
                                   ConvertOptions())
    assert converted.inputs[0]["shape"] == [2, 3, 16, 16]
    assert any("fixes its batch" in note and "Dim('batch')" in note for note in converted.notes)


@pytest.mark.slow
def test_deploy_of_a_torch_export_program_reaches_a_report(cnn_program: Path, tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"latency_sla_ms": 200, "requests_per_second": 20}))
    out = tmp_path / "deploy"
    done = subprocess.run(
        [sys.executable, "-m", "deploy_model", "deploy", str(cnn_program), "--answers", str(answers), "--out", str(out),
         "--concurrency", "1,2", "--seconds", "0.5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    record = json.loads((out / "deploy.json").read_text())
    assert "failed_stage" not in record, done.stderr[-3000:]
    assert record["outcome"] in ("GO", "NO-GO") and done.returncode == (0 if record["outcome"] == "GO" else 1)
    report = (out / "DEPLOYMENT.md").read_text()
    assert "torch.export program (.pt2) -> ONNX opset 18 (torch.onnx.export (dynamo exporter)" in report
    assert (out / "converted" / "cnn.onnx").is_file()
