import json
import pickle
import zipfile

import pytest
from foundation_helpers import run_json, run_script


def test_help_documents_output_and_exit_codes():
    proc = run_script("inspect_model.py", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "Exit codes: 0 ok; 1" in text and "2 usage error" in text
    assert "model-profile.json" in text and "--json" in text


def test_tabular_profile(tabular_model, tmp_path):
    result = run_json("inspect_model.py", tabular_model, "--out", tmp_path, "--runs", "10")
    assert result["ok"] is True and result["wrote"] == [str(tmp_path / "model-profile.json")]
    profile = json.loads((tmp_path / "model-profile.json").read_text())
    assert profile["model"]["format"] == "onnx"
    assert len(profile["model"]["sha256"]) == 64
    assert profile["model"]["bytes"] == tabular_model.stat().st_size
    assert profile["opset"] == 17 and profile["ir_version"] == 8
    assert profile["inputs"] == [
        {"name": "features", "type": "tensor(float)", "dtype": "float32", "shape": ["batch", 16], "dynamic_axes": [0]}
    ]
    assert profile["unservable"] == [] and profile["dims"] == {}
    assert profile["outputs"][0]["shape"] == ["batch", 3]
    assert profile["dynamic_batch"] is True
    assert profile["op_histogram"] == {"Gemm": 3, "Relu": 2, "Softmax": 1}
    assert profile["parameters"] == 16 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3
    assert profile["checker"]["ok"] is True
    assert "CPUExecutionProvider" in profile["onnxruntime"]["available_providers"]
    batches = {b["batch_size"]: b for b in profile["latency"]["batches"]}
    assert set(batches) == {1, 32}
    assert 0 < batches[1]["p50_ms"] <= batches[1]["p95_ms"]


def test_cnn_profile_dry_run_writes_nothing(cnn_model, tmp_path):
    result = run_json("inspect_model.py", cnn_model, "--out", tmp_path, "--runs", "3", "--batch", "4", "--dry-run")
    assert result["wrote"] == [] and not (tmp_path / "model-profile.json").exists()
    profile = result["profile"]
    assert profile["inputs"][0]["shape"] == ["batch", 3, 64, 64]
    assert profile["op_histogram"]["Conv"] == 2
    assert [b["batch_size"] for b in profile["latency"]["batches"]] == [1, 4]


def test_default_directory_is_deploy_name(tabular_model, tmp_path):
    result = run_json("inspect_model.py", tabular_model, "--runs", "3", cwd=tmp_path)
    assert result["wrote"] == ["deploy/tabular-classifier/model-profile.json"]
    assert (tmp_path / "deploy" / "tabular-classifier" / "model-profile.json").is_file()


def _refused(path, tmp_path):
    proc = run_script("inspect_model.py", path, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists(), "a refused input must not leave files"
    return proc.stderr


def test_missing_file(tmp_path):
    err = _refused(tmp_path / "nope.onnx", tmp_path)
    assert "not found" in err and "nope.onnx" in err


def test_truncated_onnx(tabular_model, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(tabular_model.read_bytes()[:1500])
    err = _refused(bad, tmp_path)
    assert "broken.onnx" in err and "not a readable ONNX model" in err


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    err = _refused(empty, tmp_path)
    assert "empty.onnx" in err


@pytest.mark.parametrize(
    ("filename", "maker", "expected"),
    [
        # A torch.save archive of pickled objects: never unpickled, the user is told to save a program.
        ("model.pt", "torch_zip", "torch.export.save"),
        # Looks like TorchScript but is no loadable archive: torch's own reason, in one line.
        ("scripted.pt", "torchscript", "not a loadable TorchScript archive"),
        # The content decides, not the suffix.
        ("renamed.onnx", "torch_zip", "it was not unpickled"),
    ],
)
def test_other_formats_go_to_their_converter(tmp_path, filename, maker, expected):
    path = tmp_path / filename
    if maker == "torch_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({"weight": [1.0]}))
            archive.writestr("archive/version", "3")
    elif maker == "torchscript":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("scripted/code/__torch__.py", "def forward(self): pass")
            archive.writestr("scripted/constants.pkl", pickle.dumps(()))
    err = _refused(path, tmp_path)
    assert filename in err and expected in err


def test_savedmodel_directory(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    err = _refused(saved, tmp_path)  # a directory holding saved_model.pb goes to the TensorFlow converter
    assert "saved could not be loaded as a SavedModel" in err
