"""A batch spread over N pods (an Indexed Job), simulated with N real runner processes.

Each process gets JOB_COMPLETION_INDEX (as Kubernetes sets it) and ONNXSERVE_BATCH_SHARD_COUNT;
some are SIGKILLed inside a shard commit (a hidden fault delay stretches each commit step) and
restarted, as the Job controller retries a failed index. The union of the pods' outputs must be
the unsharded run's output, row for row and bit for bit, every row exactly once. The same on
object storage: a local S3-compatible server (moto's server mode) on loopback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnxserve.batch import BatchOptions, run_batch
from onnxserve.batch.sharding import Owners

ROWS = 3000
SHARD = 100  # 30 shards, 10 per pod with N=3
PODS = 3
BAD_ROWS = (7, 1234, 2999)


def _input(path: Path) -> Path:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((ROWS, 16)).astype(np.float32)
    x[list(BAD_ROWS), 3] = np.nan
    columns = {"id": np.arange(50_000, 50_000 + ROWS), **{f"f{i}": x[:, i] for i in range(16)}}
    pq.write_table(pa.table(columns), path, row_group_size=700)
    return path


def _command(model: Path, source: str, out: str, delay_ms: float = 0) -> list[str]:
    return [sys.executable, "-m", "onnxserve.batch", "--model", str(model), "--input", source,
            "--output", out, "--shard-rows", str(SHARD), "--batch-size", "64", "--json",
            "--no-progress", "--fault-delay-ms", str(delay_ms)]


def _pod_env(index: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), "JOB_COMPLETION_INDEX": str(index),
            "ONNXSERVE_BATCH_SHARD_COUNT": str(PODS)}


def _simulate(command: list[str], env: Callable[[int], dict[str, str]],
              committed: Callable[[int], int], kill: tuple[int, ...]) -> list[dict[str, Any]]:
    """Start PODS runners at once; SIGKILL those in `kill` after 2 commits; retry them."""
    procs = {i: subprocess.Popen(command, env=env(i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(PODS)}
    killed_at = {}
    try:
        deadline = time.monotonic() + 120
        while len(killed_at) < len(kill):
            for i in kill:
                if i not in killed_at and committed(i) >= 2:
                    procs[i].send_signal(signal.SIGKILL)
                    procs[i].wait()
                    killed_at[i] = committed(i)
                    assert procs[i].returncode == -signal.SIGKILL
                assert i in killed_at or procs[i].poll() is None, procs[i].communicate()[1]
            assert time.monotonic() < deadline, "no pod committed 2 shards within 120 s"
            time.sleep(0.01)
        for i in kill:  # the Job controller retries the failed index: same command, same index
            assert killed_at[i] < ROWS // SHARD // PODS, "killed after it had finished"
            procs[i] = subprocess.Popen(command, env=env(i), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        summaries = []
        for i in range(PODS):
            stdout, stderr = procs[i].communicate(timeout=180)
            assert procs[i].returncode == 0, stderr
            summaries.append(json.loads(stdout))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i in kill:  # the retry resumed: it did not redo the shards committed before the kill
        assert summaries[i]["shards_resumed"] >= killed_at[i] >= 2
    return summaries


def _check_union(got: pa.Table, want: pa.Table, rejects: list[dict], want_rejects: list[dict],
                 summaries: list[dict[str, Any]], success: dict[str, Any]) -> None:
    order = [("source", "ascending"), ("row", "ascending")]
    got, want = got.sort_by(order), want.sort_by(order)
    rows = got.column("row").to_pylist()
    assert len(rows) == len(set(rows)) == ROWS - len(BAD_ROWS)  # every row exactly once
    assert sorted(set(range(ROWS)) - set(rows)) == list(BAD_ROWS)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    np.testing.assert_array_equal(  # the same predictions, bit for bit, as one unsharded run
        np.stack(got.column("probabilities").to_numpy(zero_copy_only=False)),
        np.stack(want.column("probabilities").to_numpy(zero_copy_only=False)),
    )
    assert got.column_names == want.column_names and got.equals(want)  # every column, row for row
    assert sorted(json.dumps(r, sort_keys=True) for r in rejects) == sorted(
        json.dumps(r, sort_keys=True) for r in want_rejects)
    assert [s["shard_index"] for s in summaries] == list(range(PODS))
    assert sum(s["rows"] for s in summaries) == ROWS  # disjoint shares that cover the input
    assert all(s["shards"] == ROWS // SHARD // PODS for s in summaries)  # balanced
    assert success["rows"] == ROWS and success["rejected"] == len(BAD_ROWS)
    assert success["shards"] == ROWS // SHARD and len(success["parts"]) == ROWS // SHARD


def _reference(model: Path, source: Path, out: Path) -> tuple[pa.Table, list[dict]]:
    done = subprocess.run(_command(model, str(source), str(out)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rejects = [json.loads(line) for p in sorted((out / "_rejects").glob("*.jsonl"))
               for line in p.read_text().splitlines()]
    return pq.read_table(out), rejects


def _lines(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_indexed_job_simulation_with_kills_on_local_files(tabular_model: Path, tmp_path: Path) -> None:
    source = _input(tmp_path / "rows.parquet")
    want, want_rejects = _reference(tabular_model, source, tmp_path / "reference")
    out = tmp_path / "out"
    summaries = _simulate(
        # 40 ms a commit step: a kill after 2 of a pod's 10 shards has ~1 s to land before it
        # finishes (4 ms left ~100 ms, a race on a busy machine).
        _command(tabular_model, str(source), str(out), delay_ms=40),
        _pod_env,
        lambda i: _lines(out / f"_manifest-{i:05d}-of-{PODS:05d}.jsonl"),
        kill=(0, 2),
    )
    rejects = [json.loads(line) for p in sorted((out / "_rejects").glob("*.jsonl"))
               for line in p.read_text().splitlines()]
    success = json.loads((out / "_SUCCESS.json").read_text())
    _check_union(pq.read_table(out), want, rejects, want_rejects, summaries, success)
    # the same shard files as the unsharded run, and no half-written one left behind
    assert sorted(p.name for p in out.glob("part-*")) == sorted(
        p.name for p in (tmp_path / "reference").glob("part-*"))
    assert not list(out.rglob(".tmp-*"))
    journals = [
        [json.loads(line)["shard"] for line in p.read_text().splitlines()[1:]]
        for p in sorted(out.glob("_manifest-*-of-*.jsonl"))
    ]
    assert len(journals) == PODS
    flat = [s for j in journals for s in j]
    assert len(flat) == len(set(flat)) == ROWS // SHARD  # disjoint journals, each shard once


# --- object storage: a local S3-compatible server ---------------------------------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # no instance-metadata lookups for credentials: there is no network here
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    finally:
        server.stop()


def _s3(env: dict[str, str]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                             client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]},
                             skip_instance_cache=True, use_listings_cache=False)


@pytest.mark.slow
def test_indexed_job_simulation_with_kills_on_s3(tabular_model: Path, tmp_path: Path, s3_server: dict[str, str]) -> None:
    fs = _s3(s3_server)
    fs.mkdir("batch-bucket")
    source = _input(tmp_path / "rows.parquet")
    fs.put(str(source), "batch-bucket/input/rows.parquet")
    want, want_rejects = _reference(tabular_model, source, tmp_path / "reference")

    def committed(i: int) -> int:
        try:
            return len(fs.ls(f"batch-bucket/output/_journal/_manifest-{i:05d}-of-{PODS:05d}.jsonl",
                             refresh=True))
        except FileNotFoundError:
            return 0

    summaries = _simulate(
        _command(tabular_model, "s3://batch-bucket/input/", "s3://batch-bucket/output", delay_ms=40),
        lambda i: _pod_env(i, s3_server),
        committed,
        kill=(1,),
    )
    names = fs.find("batch-bucket/output")
    assert not [n for n in names if "/.tmp-" in n]  # every temporary key was copied and deleted
    rejects = [json.loads(line) for n in names if "/_rejects/" in n
               for line in fs.cat_file(n).decode().splitlines()]
    success = json.loads(fs.cat_file("batch-bucket/output/_SUCCESS.json"))
    got = pq.read_table("batch-bucket/output", filesystem=fs)
    _check_union(got, want, rejects, want_rejects, summaries, success)
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".parquet")) == sorted(
        p.name for p in (tmp_path / "reference").glob("part-*"))


@pytest.mark.slow
def test_s3_input_and_output_in_process_with_resume(tabular_model: Path, tmp_path: Path, s3_server: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    fs = _s3(s3_server)
    fs.mkdir("inproc")
    source = _input(tmp_path / "rows.parquet")
    fs.put(str(source), "inproc/in/a.parquet")
    opts = dict(model=str(tabular_model), input="s3://inproc/in", output="s3://inproc/out",
                shard_rows=1000, progress=False)
    first = run_batch(BatchOptions(**opts))
    assert first["rows"] == ROWS and first["shards"] == 3
    fs.rm("inproc/out/_journal/_manifest.jsonl/part-00000-000001.json")  # as if killed before its marker
    fs.pipe_file("inproc/out/.tmp-part-00000-000001.parquet", b"half a shard")  # and mid-upload
    again = run_batch(BatchOptions(**opts))
    assert again["shards_resumed"] == 2 and again["shards_this_run"] == 1 and again["rows"] == ROWS
    assert not fs.exists("inproc/out/.tmp-part-00000-000001.parquet")
    assert pq.read_table("inproc/out", filesystem=fs).num_rows == ROWS - len(BAD_ROWS)
    # a changed input object refuses to resume into the same output
    fs.put(str(source), "inproc/in/b.parquet")
    with pytest.raises(Exception, match="different inputs"):
        run_batch(BatchOptions(**opts))


# --- the split itself -------------------------------------------------------------------------


@pytest.mark.parametrize(("counts", "shard_rows", "pods"), [
    ([3000], 100, 3), ([3000], 100, 7), ([10, 0, 250, 999, 1], 50, 4), ([5], 10, 3), ([100] * 9, 100, 3),
])
def test_owners_split_every_shard_to_exactly_one_pod_in_contiguous_runs(counts: list[int], shard_rows: int, pods: int) -> None:
    owners = Owners(counts, shard_rows, pods)
    units = [(f, k) for f, c in enumerate(counts) for k in range(max(1, -(-c // shard_rows)))]
    owner_of = [owners.owner(f, k) for f, k in units]
    assert owner_of == sorted(owner_of)  # contiguous: a big file splits by row range
    assert sum(owners.rows_of(i) for i in range(pods)) == sum(counts)
    sizes = [owners.shards_of(i) for i in range(pods)]
    assert max(sizes) - min(sizes) <= 1 + max(1, len(units) // pods) // 2 or len(units) < pods
    assert owners.owner(0, 10**6) == owners.owner(0, len([u for u in units if u[0] == 0]) - 1)
    if counts == [100] * 9:  # a folder of equal files splits by file
        assert [owners.owner(f, 0) for f in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_shard_index_out_of_range_is_refused_naming_the_env(tabular_model: Path, tmp_path: Path) -> None:
    source = _input(tmp_path / "rows.parquet")
    env = {**os.environ, "JOB_COMPLETION_INDEX": "3", "ONNXSERVE_BATCH_SHARD_COUNT": "3"}
    done = subprocess.run(_command(tabular_model, str(source), str(tmp_path / "o")), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "--shard-index 3 is not in [0, --shard-count 3)" in done.stderr
    assert "ONNXSERVE_BATCH_SHARD_COUNT" in done.stderr


@pytest.mark.parametrize("wanted", [set(range(30)), set(range(10, 20)), {0, 29}, {7, 8, 13, 21}, set()])
def test_parquet_reads_only_the_row_groups_of_wanted_shards(tmp_path: Path, wanted: set[int]) -> None:
    from onnxserve.batch.sources import open_source

    path = _input(tmp_path / "rows.parquet")  # row groups of 700 rows, shards of 100
    source = open_source(path, tmp_path)
    chunks = list(source.chunks(SHARD, lambda k: k in wanted))
    assert [(c.index, c.start, c.rows) for c in chunks] == [(k, k * SHARD, SHARD) for k in range(30)]
    whole = pq.read_table(path)
    for chunk in chunks:
        if chunk.index not in wanted:
            assert chunk.columns is None
            continue
        expect = whole.slice(chunk.start, chunk.rows)
        assert list(chunk.columns) == expect.column_names
        for name, column in chunk.columns.items():  # NaN rows too (assert_array_equal: NaN == NaN)
            np.testing.assert_array_equal(column.to_numpy(), expect.column(name).to_numpy())


def test_pods_that_disagree_on_options_or_split_are_refused(tabular_model: Path, tmp_path: Path) -> None:
    from onnxserve.batch import BatchError

    np.save(tmp_path / "x.npy", np.random.default_rng(2).standard_normal((600, 16)).astype(np.float32))
    out = tmp_path / "out"

    def run(index: int, count: int, shard_rows: int = 100) -> dict[str, Any]:
        return run_batch(BatchOptions(model=str(tabular_model), input=str(tmp_path / "x.npy"), output=str(out),
                                      shard_rows=shard_rows, progress=False, shard_index=index, shard_count=count))

    first = run(0, 3)
    assert first["shards"] == 2 and first["rows"] == 200 and not first["complete"]
    with pytest.raises(BatchError, match="different shard_rows"):
        run(1, 3, shard_rows=50)  # its shards would overlap pod 0's
    with pytest.raises(BatchError, match="a run split another way"):
        run(1, 4)  # another split: some rows twice, some never
    with pytest.raises(BatchError, match=r"holds no _manifest\.jsonl"):
        run(0, 1)  # an unsharded run into a sharded output
    assert run(1, 3)["rows"] == 200 and run(2, 3)["complete"]
    assert json.loads((out / "_SUCCESS.json").read_text())["rows"] == 600
