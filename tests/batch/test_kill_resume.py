"""kill -9 at several points of a batch run, resume, and find every input row exactly once.

The runner is a real subprocess (python -m onnxserve.batch) on the example tabular model; a
hidden fault delay stretches each step of a shard commit (write, rename, rejects, journal) so
the kills land inside commits, not only between them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS = 3000
SHARD = 100  # 30 shards per run
BAD_ROWS = (7, 1234, 2999)  # rejected rows: they must appear exactly once in the rejects


def _input(folder: Path, fmt: str) -> Path:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((ROWS, 16)).astype(np.float32)
    x[list(BAD_ROWS), 3] = np.nan
    ids = np.arange(10_000, 10_000 + ROWS)
    path = folder / f"rows.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table({"id": ids, **{f"f{i}": x[:, i] for i in range(16)}}), path, row_group_size=700)
    else:
        header = "id," + ",".join(f"f{i}" for i in range(16))
        body = "\n".join(f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in zip(ids, x, strict=True))
        path.write_text(header + "\n" + body + "\n")
    return path


def _command(model: Path, source: Path, out: Path, delay_ms: float) -> list[str]:
    return [sys.executable, "-m", "onnxserve.batch", "--model", str(model), "--input", str(source),
            "--output", str(out), "--shard-rows", str(SHARD), "--batch-size", "64", "--json",
            "--no-progress", "--fault-delay-ms", str(delay_ms)]


def _committed(out: Path) -> int:
    try:
        return max(0, (out / "_manifest.jsonl").read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _kill_after(command: list[str], out: Path, shards: int) -> int:
    """Start the run, SIGKILL it once `shards` are journaled; return how many were."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _committed(out) < shards:
            assert proc.poll() is None, f"run ended before {shards} shards: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no progress within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _committed(out)


def _read(out: Path) -> tuple[pa.Table, list[dict]]:
    table = pq.read_table(out).sort_by([("source", "ascending"), ("row", "ascending")])
    rejects = [json.loads(line) for p in sorted((out / "_rejects").glob("*.jsonl")) for line in p.read_text().splitlines()]
    return table, rejects


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_sigkill_mid_run_then_resume_gives_every_row_exactly_once(tabular_model: Path, tmp_path: Path, fmt: str) -> None:
    source = _input(tmp_path, fmt)
    reference = tmp_path / "reference"
    done = subprocess.run(_command(tabular_model, source, reference, 0), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    # 40 ms at each of a shard's 3 commit steps: the kill after shard 20 has 10 shards (~1.2 s) to
    # land before the run would finish, not the ~70 ms that 4 ms left a busy machine.
    command = _command(tabular_model, source, out, delay_ms=40)
    seen = []
    for target in (1, 10, 20):  # early, middle, late; each kill lands at a random step of a commit
        seen.append(_kill_after(command, out, target))
        assert not (out / "_SUCCESS.json").exists()
    assert seen == sorted(seen) and seen[-1] < ROWS // SHARD  # progress kept, never finished
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["shards_resumed"] >= seen[-1] and summary["shards_this_run"] < ROWS // SHARD
    assert summary["rows"] == ROWS and summary["rejected"] == len(BAD_ROWS)

    want, want_rejects = _read(reference)
    got, got_rejects = _read(out)
    rows = got.column("row").to_numpy()
    assert len(rows) == len(set(rows.tolist())) == ROWS - len(BAD_ROWS)  # exactly once
    assert sorted(set(range(ROWS)) - set(rows.tolist())) == list(BAD_ROWS)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    # The same predictions, bit for bit, as the run that was never interrupted.
    np.testing.assert_array_equal(
        np.stack(got.column("probabilities").to_numpy(zero_copy_only=False)),
        np.stack(want.column("probabilities").to_numpy(zero_copy_only=False)),
    )
    assert sorted(r["row"] for r in got_rejects) == list(BAD_ROWS)  # rejects exactly once too
    assert got_rejects == want_rejects
    assert not list(out.rglob(".tmp-*"))  # no half-written shard left behind
    manifest = [json.loads(line) for line in (out / "_manifest.jsonl").read_text().splitlines()[1:]]
    assert len({m["shard"] for m in manifest}) == len(manifest) == ROWS // SHARD


def test_sigterm_commits_in_flight_shards_and_exits_143(tabular_model: Path, tmp_path: Path) -> None:
    source = _input(tmp_path, "parquet")
    out = tmp_path / "out"
    command = _command(tabular_model, source, out, delay_ms=40)  # SIGTERM lands well before the end
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _committed(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["ok"] is False
    assert summary["shards"] == _committed(out) < ROWS // SHARD
    assert "SIGTERM" in stderr
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows"] == ROWS
