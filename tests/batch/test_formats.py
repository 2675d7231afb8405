"""Every input format feeds the model by the documented rule and gives onnxruntime's own answers;
bad rows go to the rejects with their reason; refused inputs exit 1 and write nothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnxserve.batch import BatchError, BatchOptions, run_batch
from onnxserve.batch.__main__ import main as batch_main

ROWS = 1000


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((ROWS, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(tabular_model: Path, features: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(tabular_model), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features})[0]


def _run(model: Path, source: Path, out: Path, **kw) -> dict:
    opts = BatchOptions(model=str(model), input=str(source), output=str(out), progress=False, **kw)
    return run_batch(opts)


def _probabilities(out: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(out).sort_by([("source", "ascending"), ("row", "ascending")])
    return table.column("row").to_numpy(), np.stack(table.column("probabilities").to_numpy(zero_copy_only=False))


def _write(fmt: str, folder: Path, x: np.ndarray) -> Path:
    path = folder / f"in.{fmt}"
    ids = np.arange(len(x))
    if fmt == "npy":
        np.save(path, x)
    elif fmt == "npz":
        np.savez_compressed(path, features=x, id=ids)
    elif fmt == "parquet":  # by name: one list column per input
        pq.write_table(pa.table({"id": ids, "features": list(x)}), path, row_group_size=333)
    elif fmt == "csv":  # by position: 16 columns besides the id
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *[f"f{i}" for i in range(16)]])
            writer.writerows([i, *map(repr, map(float, row))] for i, row in enumerate(x))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": int(i), "features": row.tolist()}) + "\n" for i, row in enumerate(x)))
    return path


@pytest.mark.parametrize("fmt", ["npy", "npz", "parquet", "csv", "jsonl"])
def test_each_input_format_scores_like_onnxruntime(fmt, tabular_model, features, expected, tmp_path):
    source = _write(fmt, tmp_path, features)
    summary = _run(tabular_model, source, tmp_path / "out", shard_rows=300)
    assert summary["rows"] == summary["scored"] == ROWS and summary["shards"] == 4
    rows, probs = _probabilities(tmp_path / "out")
    assert rows.tolist() == list(range(ROWS))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    rule = "by position" if fmt in ("npy", "csv") else "by name"
    assert rule in summary["mapping"][0]
    assert json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())["rows"] == ROWS


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "npz"])
def test_each_output_format_holds_the_same_predictions(fmt, tabular_model, features, expected, tmp_path):
    source = _write("npz", tmp_path, features)
    out = tmp_path / "out"
    _run(tabular_model, source, out, shard_rows=400, output_format=fmt)
    parts = sorted(out.glob(f"part-*.{fmt}"))
    assert len(parts) == 3
    if fmt == "csv":
        rows = [r for p in parts for r in csv.DictReader(p.open())]
        probs = np.array([[float(r[f"probabilities_{j}"]) for j in range(3)] for r in rows])
        ids = [int(r["id"]) for r in rows]
    elif fmt == "jsonl":
        rows = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
        probs, ids = np.array([r["probabilities"] for r in rows]), [r["id"] for r in rows]
    else:
        loaded = [np.load(p) for p in parts]
        probs = np.concatenate([z["probabilities"] for z in loaded])
        ids = np.concatenate([z["id"] for z in loaded]).astype(int).tolist()
    assert ids == list(range(ROWS))  # the input's id column joins each prediction back
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_bad_rows_are_rejected_with_their_reason_and_the_rest_scored(tabular_model, features, expected, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *[f"f{i}" for i in range(16)]])
        for i, row in enumerate(features[:50]):
            values = [repr(float(v)) for v in row]
            if i == 5:
                values[2] = "abc"
            if i == 9:
                values[0] = ""
            if i == 11:
                values[4] = "inf"
            writer.writerow([f"r{i}", *values] + (["extra"] if i == 20 else []))
    summary = _run(tabular_model, source, tmp_path / "out", max_reject_ratio=0.1)
    assert (summary["scored"], summary["rejected"]) == (46, 4)
    rejects = [json.loads(x) for x in (tmp_path / "out" / "_rejects").glob("*.jsonl").__next__().read_text().splitlines()]
    reasons = {r["row"]: (r["id"], r["reason"]) for r in rejects}
    assert reasons[5] == ("r5", "column 'f2' value 'abc' is not a float32 number")
    assert reasons[9] == ("r9", "column 'f0' is missing")
    assert reasons[11] == ("r11", "input 'features' holds NaN or Inf")
    assert reasons[20] == ("r20", "has 18 fields; the header names 17")
    rows, probs = _probabilities(tmp_path / "out")
    keep = [i for i in range(50) if i not in reasons]
    assert rows.tolist() == keep
    np.testing.assert_allclose(probs, expected[keep], rtol=1e-5, atol=1e-6)


def test_fail_fast_stops_at_the_first_bad_row_and_keeps_committed_shards(tabular_model, features, tmp_path):
    x = features.copy()
    x[650, 0] = np.nan
    source = tmp_path / "in.npy"
    np.save(source, x)
    out = tmp_path / "out"
    with pytest.raises(BatchError, match=r"in.npy row 650: input 'features' holds NaN or Inf \(--fail-fast"):
        _run(tabular_model, source, out, shard_rows=200, fail_fast=True)
    manifest = (out / "_manifest.jsonl").read_text().splitlines()[1:]
    assert [json.loads(m)["start"] for m in manifest] == [0, 200, 400]  # shards before the bad row
    assert not (out / "_SUCCESS.json").exists()
    summary = _run(tabular_model, source, out, shard_rows=200)  # without --fail-fast: resumes
    assert (summary["shards_resumed"], summary["rejected"], summary["rows"]) == (3, 1, ROWS)


def test_image_model_from_npy_and_from_flat_parquet_lists(cnn_model, tmp_path):
    images = np.random.default_rng(5).random((40, 3, 64, 64), dtype=np.float32)
    session = ort.InferenceSession(str(cnn_model), providers=["CPUExecutionProvider"])
    want = session.run(None, {"image": images})[0]
    np.save(tmp_path / "img.npy", images)
    pq.write_table(pa.table({"image": list(images.reshape(40, -1))}), tmp_path / "img.parquet")
    for name in ("img.npy", "img.parquet"):
        out = tmp_path / f"out-{name}"
        summary = _run(cnn_model, tmp_path / name, out, shard_rows=16)
        assert summary["scored"] == 40 and summary["batch_size"] == 64  # auto: ~4 MiB of input per run
        np.testing.assert_allclose(_probabilities(out)[1], want, rtol=1e-4, atol=1e-5)


def test_folder_input_keeps_each_file_as_the_join_source(tabular_model, features, expected, tmp_path):
    folder = tmp_path / "in"
    (folder / "day2").mkdir(parents=True)
    np.save(folder / "a.npy", features[:300])
    np.save(folder / "day2" / "b.npy", features[300:])
    (folder / "_ignored.npy").write_bytes(b"not read")
    summary = _run(tabular_model, folder, tmp_path / "out")
    assert summary["files"] == 2 and summary["rows"] == ROWS
    table = pq.read_table(tmp_path / "out").sort_by([("source", "ascending"), ("row", "ascending")])
    assert table.column("source").unique().to_pylist() == ["a.npy", "day2/b.npy"]
    np.testing.assert_allclose(np.stack(table.column("probabilities").to_numpy(zero_copy_only=False)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.save(d / "x.npy", np.zeros((4, 15), np.float32)), "has shape [4, 15]; expected features float32 [batch, 16]"),
        (lambda d: pq.write_table(pa.table({f"c{i}": [1.0] for i in range(15)}), d / "x.parquet"),
         "15 feature column(s)"),
        (lambda d: (d / "x.txt").write_text("1,2"), "suffix '.txt'"),
        (lambda d: np.save(d / "x.npy", np.array(["a"] * 16 * 2).reshape(2, 16)), "has dtype <U1"),
    ],
)
def test_inputs_that_cannot_feed_the_model_are_refused_before_anything_is_written(make, message, tabular_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    source = next(folder.iterdir())
    out = tmp_path / "out"
    with pytest.raises(BatchError) as info:
        _run(tabular_model, source, out)
    assert message in str(info.value)
    assert not out.exists()


def test_resume_with_other_inputs_or_options_is_refused(tabular_model, features, tmp_path):
    source = tmp_path / "in.npy"
    np.save(source, features)
    out = tmp_path / "out"
    _run(tabular_model, source, out, shard_rows=500)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(BatchError, match="different shard_rows"):
        _run(tabular_model, source, out, shard_rows=400)
    np.save(source, features[:10])
    with pytest.raises(BatchError, match="different inputs"):
        _run(tabular_model, source, out, shard_rows=500)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing lost or added
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BatchError, match=r"not empty and holds no _manifest\.jsonl"):
        _run(tabular_model, source, tmp_path / "other")


def test_dry_run_writes_nothing(tabular_model, features, tmp_path):
    source = tmp_path / "in.npy"
    np.save(source, features)
    summary = _run(tabular_model, source, tmp_path / "out", dry_run=True, shard_rows=300)
    assert summary["dry_run"] and summary["rows_estimate"] == ROWS and summary["shards_estimate"] == 4
    assert not (tmp_path / "out").exists()


def test_input_is_streamed_not_loaded_whole(tabular_model, tmp_path):
    """A 32 MiB .npy goes through with a few MiB of Python-side memory: reads are per chunk."""
    x = np.random.default_rng(1).standard_normal((500_000, 16)).astype(np.float32)
    source = tmp_path / "big.npy"
    np.save(source, x)
    del x
    tracemalloc.start()
    try:
        summary = _run(tabular_model, source, tmp_path / "out", shard_rows=5_000, output_format="npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["rows"] == 500_000
    assert peak < source.stat().st_size / 4, f"peak {peak / 2**20:.1f} MiB for a {source.stat().st_size / 2**20:.0f} MiB file"


def test_cli_usage_json_and_exit_codes(tabular_model, features, tmp_path, capsys):
    assert batch_main(["--help"]) == 0
    assert "Exit codes: 0" in capsys.readouterr().out
    assert batch_main(["--model", str(tabular_model)]) == 2  # --input and --output missing
    capsys.readouterr()
    source = tmp_path / "in.npy"
    np.save(source, features)
    assert batch_main(["--model", str(tabular_model), "--input", str(source), "--output", str(tmp_path / "o"), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["rows"] == ROWS
    assert batch_main(["--model", str(tmp_path / "missing.onnx"), "--input", str(source), "--output", str(tmp_path / "p"), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False and "is not a file" in captured.err
    # gs:// needs gcsfs, which is not installed here: refused naming the package to install
    assert batch_main(["--model", str(tabular_model), "--input", "gs://bucket/x.parquet", "--output", str(tmp_path / "q")]) == 1
    assert "pip install gcsfs" in capsys.readouterr().err
    assert batch_main(["--model", str(tabular_model), "--input", "ftp://host/x.parquet", "--output", str(tmp_path / "q")]) == 1
    assert "expected a local path, a file:// URL or object storage" in capsys.readouterr().err


def test_deploy_model_batch_verb_and_script_run_the_same_code(repo_root, tabular_model, features, tmp_path, cli_env):
    source = tmp_path / "in.npy"
    np.save(source, features[:10])
    for i, command in enumerate((["deploy-model", "batch"], [sys.executable, str(repo_root / "scripts" / "batch_inference.py")])):
        done = subprocess.run([*command, "--model", str(tabular_model), "--input", str(source), "--output", str(tmp_path / f"o{i}"), "--json"],
                              capture_output=True, text=True, env=cli_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["scored"] == 10
        helped = subprocess.run([*command, "--help"], capture_output=True, text=True, env=cli_env, timeout=60)
        assert helped.returncode == 0 and "Exit codes" in helped.stdout
