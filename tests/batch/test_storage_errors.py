"""Storage failures end a batch run with one line on stderr, exit 74 and an exact resume.

Every failure here is a real one, met by a real `python -m onnxserve.batch` process:
- ENOSPC and EROFS: a small tmpfs mounted for the test (`mount -o remount,ro` for EROFS); the
  tests run as root here, and chmod does not stop root. Where mount is refused (no
  CAP_SYS_ADMIN) they skip, saying so.
- object storage 403: moto's S3 server with its IAM checks turned on; the runner's user loses
  s3:PutObject in the middle of the run, then gets it back.
- object storage 500: moto cannot answer one, so a loopback stand-in store answers every request
  with S3's InternalError (real HTTP through botocore and s3fs, nothing patched in-process).
Each run's committed shards must be whole (byte for byte the shards of an uninterrupted run),
_SUCCESS.json absent, and the printed command must resume exactly.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS = 3000
SHARD = 100  # 30 shards of about 3.7 KiB each: one tmpfs page per shard
BAD_ROWS = (7, 1234, 2999)
EXIT_STORAGE = 74


def _input(path: Path) -> Path:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((ROWS, 16)).astype(np.float32)
    x[list(BAD_ROWS), 3] = np.nan
    columns = {"id": np.arange(ROWS), **{f"f{i}": x[:, i] for i in range(16)}}
    pq.write_table(pa.table(columns), path, row_group_size=700)
    return path


def _command(model: Path, source: Path, out: str, delay_ms: float = 0) -> list[str]:
    return [sys.executable, "-m", "onnxserve.batch", "--model", str(model), "--input", str(source),
            "--output", out, "--shard-rows", str(SHARD), "--batch-size", "64", "--json",
            "--no-progress", "--fault-delay-ms", str(delay_ms)]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment less any batch option (they would join the resume command)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("ONNXSERVE_BATCH_") and k != "JOB_COMPLETION_INDEX"}
    return {**base, **(extra or {})}


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=_env(env))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _input(tmp_path_factory.mktemp("input") / "rows.parquet")


@pytest.fixture(scope="module")
def reference(tabular_model: Path, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of an uninterrupted run on a healthy disk."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = _run(_command(tabular_model, source, str(out)))
    assert done.returncode == 0, done.stderr
    return out


def _error_line(done: subprocess.CompletedProcess[str], command: list[str], path: str, what: str) -> str:
    """The run failed with exit 74 and exactly one line on stderr, naming path, cause and resume."""
    assert done.returncode == EXIT_STORAGE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    line = lines[0]
    assert line.startswith("batch: error: cannot ") and path in line and what in line, line
    assert "_SUCCESS.json was not written" in line
    assert line.endswith(f"resume with: {shlex.join(command)}"), line
    body = json.loads(done.stdout)  # --json: the same facts for a machine
    assert body["ok"] is False and body["storage"].startswith(what) and path in body["path"]
    return line


def _journaled(manifest: bytes) -> list[dict[str, Any]]:
    """The shards a local journal records (a line torn by the failure is not one of them)."""
    entries = []
    for line in manifest.split(b"\n")[1:-1]:
        entries.append(json.loads(line))
    return entries


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _whole_shards(files: dict[str, bytes], reference: Path) -> None:
    """Every shard or rejects file present is byte for byte the uninterrupted run's; no temporary."""
    assert not [name for name in files if Path(name).name.startswith(".tmp-")]
    for name, data in files.items():
        if name.startswith(("part-", "_rejects/")):
            assert data == (reference / name).read_bytes(), name


def _same_as_reference(out: Path, reference: Path) -> None:
    got, want = _files(out), _files(reference)
    shards = sorted(n for n in want if n.startswith(("part-", "_rejects/")))
    assert sorted(n for n in got if n.startswith(("part-", "_rejects/"))) == shards
    assert all(got[n] == want[n] for n in shards)  # the same bytes: every row exactly once
    entries = _journaled(got["_manifest.jsonl"])
    assert len({e["shard"] for e in entries}) == len(entries) == ROWS // SHARD
    success = json.loads(got["_SUCCESS.json"])
    assert success["rows"] == ROWS and success["rejected"] == len(BAD_ROWS)


# --- a real small filesystem ------------------------------------------------------------------


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"`mount {' '.join(args)}` failed here ({done.stderr.strip() or done.returncode}): "
                    "these tests need root with CAP_SYS_ADMIN to mount a tmpfs")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=True)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True, text=True,
                   timeout=30, check=True)


def test_full_disk_ends_with_one_line_and_the_same_command_resumes_exactly(
        tabular_model: Path, source: Path, reference: Path, tmp_path: Path) -> None:
    page = os.sysconf("SC_PAGESIZE")  # tmpfs counts whole pages: a shard takes one
    with tmpfs(tmp_path / "disk", f"{64 * page // 1024}k") as disk:
        # Leave room for a few shards only: the run fills the disk part of the way through.
        stat = os.statvfs(disk)
        (disk / "ballast").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 10 * page))
        out = disk / "out"
        command = _command(tabular_model, source, str(out))
        failed = _run(command)
        _error_line(failed, command, str(out), "no space left on device")
        files = _files(out)
        assert "_SUCCESS.json" not in files
        committed = _journaled(files["_manifest.jsonl"])
        assert 1 <= len(committed) < ROWS // SHARD, len(committed)
        _whole_shards(files, reference)
        for entry in committed:  # each journaled shard's files are there
            assert entry["file"] in files and (not entry["rejects_file"] or entry["rejects_file"] in files)

        (disk / "ballast").unlink()  # space freed: the printed command resumes
        resumed = _run(command)
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        assert summary["shards_resumed"] == len(committed)
        assert summary["shards_this_run"] == ROWS // SHARD - len(committed)
        assert summary["rows"] == ROWS and summary["rejected"] == len(BAD_ROWS)
        _same_as_reference(out, reference)


def _sigterm_after(command: list[str], manifest: Path, shards: int) -> None:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 60
        while not manifest.exists() or manifest.read_bytes().count(b"\n") - 1 < shards:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"{shards} shards not committed within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_read_only_filesystem_ends_with_one_line_and_the_same_command_resumes_exactly(
        tabular_model: Path, source: Path, reference: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "out"
        command = _command(tabular_model, source, str(out), delay_ms=15)  # SIGTERM well before the end
        _remount(disk, "ro")  # read-only from the start: nothing can be written, nothing is
        _error_line(_run(command), command, str(out / "_manifest.jsonl"), "read-only file system")
        assert not list(disk.iterdir())

        _remount(disk, "rw")
        _sigterm_after(command, out / "_manifest.jsonl", 3)  # a partial output to resume
        before = _files(out)
        committed = _journaled(before["_manifest.jsonl"])
        assert "_SUCCESS.json" not in before and 3 <= len(committed) < ROWS // SHARD

        _remount(disk, "ro")  # as a volume that went read-only on errors
        failed = _run(command)
        _error_line(failed, command, str(out), "read-only file system")
        assert _files(out) == before  # not a byte changed
        _whole_shards(before, reference)

        _remount(disk, "rw")
        resumed = _run(command)
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        assert summary["shards_resumed"] == len(committed)
        assert summary["shards_this_run"] == ROWS // SHARD - len(committed)
        _same_as_reference(out, reference)


# --- object storage ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _aws_env(endpoint: str, key: str = "testing", secret: str = "testing") -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _policy(actions: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})


@pytest.fixture()
def s3_with_iam() -> Iterator[dict[str, Any]]:
    """moto's S3 server with IAM checks on: a `runner` user and an `admin` who sets its policy."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    import requests

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        root = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                    region_name="us-east-1")
        boto3.client("s3", **root).create_bucket(Bucket="storage-errors")
        iam = boto3.client("iam", **root)
        keys = {}
        for user, actions in (("runner", ["s3:*"]), ("admin", ["s3:*", "iam:*"])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="access", PolicyDocument=_policy(actions))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        # From here on moto checks every request's signature and its user's IAM policy.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        admin = dict(endpoint_url=endpoint, aws_access_key_id=keys["admin"][0],
                     aws_secret_access_key=keys["admin"][1], region_name="us-east-1")

        def runner_may(actions: list[str]) -> None:
            boto3.client("iam", **admin).put_user_policy(
                UserName="runner", PolicyName="access", PolicyDocument=_policy(actions))

        yield {"endpoint": endpoint, "runner_env": _aws_env(endpoint, *keys["runner"]),
               "admin_s3": boto3.client("s3", **admin), "runner_may": runner_may}
    finally:
        # The auth switch is moto's process-wide setting: turn it off for the other tests.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        server.stop()


def _objects(s3: Any, prefix: str) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket="storage-errors", Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: s3.get_object(Bucket="storage-errors", Key=o["Key"])["Body"].read()
            for o in listing}


@pytest.mark.slow
def test_object_storage_403_mid_run_ends_with_one_line_and_resumes_exactly(
        tabular_model: Path, source: Path, reference: Path, s3_with_iam: dict[str, Any]) -> None:
    s3, env = s3_with_iam["admin_s3"], s3_with_iam["runner_env"]
    url = "s3://storage-errors/out"
    command = _command(tabular_model, source, url, delay_ms=20)
    markers = "out/_journal/_manifest.jsonl/"
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(env))
    try:
        deadline = time.monotonic() + 60
        while len(_objects(s3, markers)) < 2:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no 2 shards committed to S3 within 60 s"
            time.sleep(0.02)
        s3_with_iam["runner_may"](["s3:Get*", "s3:List*"])  # write access revoked mid-run
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    line = _error_line(done, command, url, "object storage answered 403")
    # the store's code from a PUT's body, or the reason phrase of a HEAD's empty 403
    assert ("AccessDenied" in line or "Forbidden" in line) and "grant the credentials access" in line
    objects = _objects(s3, "out/")
    assert "_SUCCESS.json" not in objects
    committed = [json.loads(v) for k, v in objects.items() if k.startswith("_journal/")]
    assert 2 <= len(committed) < ROWS // SHARD
    for entry in committed:  # a journaled shard is whole: the uninterrupted run's bytes
        assert objects[entry["file"]] == (reference / entry["file"]).read_bytes()

    s3_with_iam["runner_may"](["s3:*"])  # access granted again: the printed command resumes
    resumed = _run(command, env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["shards_resumed"] == len(committed) and summary["rows"] == ROWS
    objects = _objects(s3, "out/")
    assert not [k for k in objects if k.rsplit("/", 1)[-1].startswith(".tmp-")]
    parts = sorted(k for k in objects if k.startswith(("part-", "_rejects/")))
    assert parts == sorted(p for p in _files(reference) if p.startswith(("part-", "_rejects/")))
    assert all(objects[k] == (reference / k).read_bytes() for k in parts)


class _Failing(http.server.BaseHTTPRequestHandler):
    """A stand-in S3 endpoint in an outage: every request gets S3's 500 InternalError."""

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>'
            b"We encountered an internal error. Please try again.</Message></Error>")

    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.BODY)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _fail

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def failing_store() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_object_storage_500_ends_with_one_line(
        tabular_model: Path, source: Path, failing_store: str) -> None:
    url = "s3://storage-errors/out"
    command = _command(tabular_model, source, url)
    # AWS_MAX_ATTEMPTS=1: botocore would otherwise retry each 500 with backoff for seconds.
    done = _run(command, {**_aws_env(failing_store), "AWS_MAX_ATTEMPTS": "1"})
    line = _error_line(done, command, url, "object storage answered 500")
    # cat_file asks HEAD first, whose 500 has no body: the reason phrase is all there is
    assert "answered 500 (Internal" in line and "wait for the store to recover" in line


def test_resume_command_carries_the_batch_environment(tabular_model: Path, source: Path,
                                                      failing_store: str) -> None:
    """Options set as ONNXSERVE_BATCH_* (and an Indexed Job's index) are part of the resume."""
    command = _command(tabular_model, source, "s3://storage-errors/out")
    env = {**_aws_env(failing_store), "AWS_MAX_ATTEMPTS": "1", "ONNXSERVE_BATCH_OUTPUT_FORMAT": "jsonl",
           "JOB_COMPLETION_INDEX": "0"}
    done = _run(command, env)
    assert done.returncode == EXIT_STORAGE, done.stderr
    prefix = "JOB_COMPLETION_INDEX=0 ONNXSERVE_BATCH_OUTPUT_FORMAT=jsonl"
    assert done.stderr.strip().endswith(f"resume with: {prefix} {shlex.join(command)}"), done.stderr


# --- what the classifier calls a storage failure ----------------------------------------------


def _client_error(status: int, code: str) -> Exception:
    botocore = pytest.importorskip("botocore.exceptions")
    return botocore.ClientError({"Error": {"Code": code, "Message": "m"},
                                 "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


class _HttpError(Exception):  # the shape of gcsfs' HttpError and azure's HttpResponseError
    def __init__(self, status: int) -> None:
        super().__init__(f"{status} from the store")
        self.code = self.status_code = status


@pytest.mark.parametrize(("make", "words"), [
    (lambda: PermissionError(13, "Permission denied"), "permission denied"),  # EACCES: root passes chmod here
    (lambda: OSError(1, "Operation not permitted"), "permission denied"),
    (lambda: OSError(122, "Disk quota exceeded"), "disk quota exceeded"),
    (lambda: OSError("IOError: [Errno 28] No space left on device"), "no space left on device"),  # pyarrow
    (lambda: _client_error(503, "SlowDown"), "object storage answered 503 (SlowDown: m)"),
    (lambda: _HttpError(429), "object storage answered 429"),
    (lambda: ValueError("a bug, not the storage"), None),
    (lambda: OSError(2, "No such file or directory"), None),
])
def test_classify_names_storage_failures_only(make: Any, words: str | None) -> None:
    from onnxserve.batch.storage_errors import classify

    exc = make()
    got = classify(exc)
    if words is None:
        assert got is None
        return
    assert got is not None and got.startswith(words), got
    if "answered" in words:  # s3fs raises OSError(EIO) with the store's error as its cause
        wrapped = OSError(5, "s3fs's translation")
        wrapped.__cause__ = exc
        assert classify(wrapped) == got
