"""The batch runner on the value types real models use: ZipMap classifiers (JSON per row, equal to
onnxruntime in-process row for row), string inputs, a stateful model with a 0-d input scored one
row per run, CSV ids that stay numbers, and a run that rejects too many rows failing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from onnxserve.batch import BatchError, BatchOptions, run_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import value_models as vm

pytest.importorskip("skl2onnx", reason="skl2onnx is in the dev extra")


@pytest.fixture(scope="module")
def vmodels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return vm.build_all(tmp_path_factory.mktemp("value-models"))


def _run(model: Path, source: Path, out: Path, **kw) -> dict:
    opts = BatchOptions(model=str(model), input=str(source), output=str(out), progress=False, **kw)
    return run_batch(opts)


def _iris_csv(path: Path, x: np.ndarray) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "a", "b", "c", "d"])
        writer.writerows([100 + i, *map(repr, map(float, row))] for i, row in enumerate(x))
    return path


def _jsonl_rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["row"])


@pytest.mark.parametrize("model", ["zipmap", "zipmap_int"])
def test_zipmap_classifier_rows_equal_onnxruntime(vmodels, tmp_path, model):
    x, _ = vm.iris()
    label, probs = ort.InferenceSession(str(vmodels[model]), providers=["CPUExecutionProvider"]).run(
        None, {"X": x}
    )
    source = _iris_csv(tmp_path / "iris.csv", x)
    summary = _run(vmodels[model], source, tmp_path / "jsonl", output_format="jsonl", shard_rows=64)
    assert summary["scored"] == len(x) and summary["rejected"] == 0
    rows = _jsonl_rows(tmp_path / "jsonl")
    assert [r["id"] for r in rows] == [100 + i for i in range(len(x))]  # ints stay ints
    assert [r["output_label"] for r in rows] == label.tolist()
    # jsonl writes each row's {class: probability} as an object; int classes become string keys
    assert [r["output_probability"] for r in rows] == [{str(k): v for k, v in p.items()} for p in probs]

    _run(vmodels[model], source, tmp_path / "pq", shard_rows=64)
    table = pq.read_table(tmp_path / "pq").sort_by([("row", "ascending")])
    assert table.column("id").type.id == __import__("pyarrow").int64().id
    assert table.column("output_label").to_pylist() == label.tolist()
    parsed = [json.loads(t) for t in table.column("output_probability").to_pylist()]
    assert parsed == [{str(k): v for k, v in p.items()} for p in probs]

    _run(vmodels[model], source, tmp_path / "csv", output_format="csv")
    lines = list(csv.DictReader((tmp_path / "csv" / "part-00000-000000.csv").open()))
    assert [json.loads(r["output_probability"]) for r in lines] == parsed


def test_string_input_from_jsonl_and_npz(vmodels, tmp_path):
    texts = ["a kitten on the mat", "shares of the bank fell", "dogs in the park"]
    session = ort.InferenceSession(str(vmodels["text"]), providers=["CPUExecutionProvider"])
    label, probs = session.run(None, {"text": np.array([[t] for t in texts], dtype=object)})
    source = tmp_path / "in" / "texts.jsonl"
    source.parent.mkdir()
    source.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    _run(vmodels["text"], source, tmp_path / "out", output_format="jsonl")
    rows = _jsonl_rows(tmp_path / "out")
    assert [r["output_label"] for r in rows] == label.tolist()
    assert [r["output_probability"] for r in rows] == probs
    npz = tmp_path / "texts.npz"
    np.savez(npz, text=np.array([[t] for t in texts]))
    _run(vmodels["text"], npz, tmp_path / "out-npz", output_format="npz")
    with np.load(tmp_path / "out-npz" / "part-00000-000000.npz") as shard:  # no pickle needed
        assert shard["output_label"].tolist() == label.tolist()


def test_stateful_model_with_a_0d_input_is_scored_one_row_per_run(vmodels, tmp_path):
    session = ort.InferenceSession(str(vmodels["vad"]), providers=["CPUExecutionProvider"])
    feeds = [vm.vad_feeds(1, sr=sr) for sr in (8000, 16000, 8000)]
    lines = [
        json.dumps({k: (v.tolist() if v.ndim else int(v)) for k, v in f.items()}) for f in feeds
    ]
    source = tmp_path / "vad.jsonl"
    source.write_text("\n".join(lines) + "\n")
    summary = _run(vmodels["vad"], source, tmp_path / "out", output_format="jsonl")
    assert "sr" in summary["per_row_runs"] and summary["scored"] == 3
    rows = _jsonl_rows(tmp_path / "out")
    for f, row in zip(feeds, rows, strict=True):
        speech, state = session.run(None, f)
        assert np.allclose(row["speech"], speech) and np.allclose(row["state_out"], state)


def test_too_many_rejected_rows_fail_the_run(vmodels, tmp_path):
    x, _ = vm.iris()
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "a", "b", "c", "d"])
        for i, row in enumerate(x[:20]):
            writer.writerow([i, *(["oops"] if i % 4 == 0 else [repr(float(row[0]))]), *map(float, row[1:])])
    cmd = [sys.executable, "-m", "onnxserve.batch", "--model", str(vmodels["zipmap"]), "--input", str(source),
           "--no-progress", "--json"]
    failed = subprocess.run([*cmd, "--output", str(tmp_path / "a")], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1, failed.stderr
    assert "5 of 20 rows were rejected (25.0%)" in failed.stderr and "--max-reject-ratio" in failed.stderr
    body = json.loads(failed.stdout)
    assert body["ok"] is False and body["rejected"] == 5 and body["reject_ratio"] == 0.25
    assert not (tmp_path / "a" / "_SUCCESS.json").exists()
    assert len((tmp_path / "a" / "_rejects" / "part-00000-000000.jsonl").read_text().splitlines()) == 5
    allowed = subprocess.run([*cmd, "--output", str(tmp_path / "b"), "--max-reject-ratio", "0.3"],
                             capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "b" / "_SUCCESS.json").exists()


def test_unservable_model_is_refused_with_the_reason(vmodels, tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((2, 2), np.float32))
    with pytest.raises(BatchError) as caught:
        _run(vmodels["seq_of_tensors"], source, tmp_path / "out")
    assert "seq(tensor(float))" in str(caught.value)
