"""Where payload log records go: rotated JSON Lines files, a CloudEvents HTTP endpoint, or
object storage through fsspec. Each sink runs on the payload log's own thread only.

A sink's ``write`` / ``tick`` / ``close`` return how many records are now safely stored (0 while
a batching sink buffers) and raise ``SinkFailed`` with how many records were lost.
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

# The CloudEvents type of one record (request and response together); the data is the record.
CLOUDEVENT_TYPE = "org.onnxserve.inference.payload"
FEEDBACK_TYPE = "org.onnxserve.inference.feedback"  # ground truth for an earlier request
# Sent as the HTTP sink's Authorization header when set (from a Secret); never a flag, so it
# does not show in argv or /proc/<pid>/cmdline.
AUTH_ENV = "ONNXSERVE_PAYLOAD_LOG_AUTHORIZATION"


class SinkFailed(Exception):
    """Records could not be stored; ``lost`` of them are gone (counted as dropped)."""

    def __init__(self, message: str, lost: int, reason: str = "sink_error") -> None:
        super().__init__(message)
        self.lost = lost
        self.reason = reason


class Sink(Protocol):
    def write(self, line: bytes, record: dict[str, Any]) -> int: ...

    def tick(self) -> int: ...

    def close(self) -> int: ...


def sink_kind(url: str) -> str:
    """'file', 'http' or 'object' for a sink URL ('' is no sink)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("", "file"):
        return "file"
    if scheme in ("http", "https"):
        return "http"
    return "object"


class JsonlFileSink:
    """``<dir>/<base>.jsonl``, rotated to ``.1`` .. ``.<backups>`` before it would pass
    ``max_bytes``: the files never hold more than (backups + 1) * max_bytes. A write that fails
    half-way (disk full) is cut back off, so the file only ever holds whole lines."""

    def __init__(self, directory: Path, base: str, max_bytes: int, backups: int) -> None:
        self.path = directory / f"{base}.jsonl"
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    def write(self, line: bytes, record: dict[str, Any]) -> int:
        if len(line) > self.max_bytes:
            raise SinkFailed(
                f"a record of {len(line)} bytes exceeds --payload-log-max-file-bytes "
                f"({self.max_bytes}); lower --payload-log-hash-above-bytes",
                1,
                "too_large",
            )
        try:
            fd = self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
                fd = self._open()
            view = memoryview(line)
            written = 0
            try:
                while written < len(line):
                    written += os.write(fd, view[written:])
            except OSError:
                if written:
                    os.ftruncate(fd, self._size)  # no half line left behind
                raise
            self._size += written
            return 1
        except OSError as exc:
            self._close_fd()
            raise SinkFailed(f"cannot write {self.path}: {exc.strerror or exc}", 1) from exc

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    def tick(self) -> int:
        return 0

    def close(self) -> int:
        self._close_fd()
        return 0


class CloudEventsSink:
    """One HTTP POST per record in CloudEvents binary content mode (as KServe's payload logger
    sends them): ce-* headers carry the event's attributes, the body is the record."""

    def __init__(self, url: str, timeout_s: float, source: str) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.source = source
        self.auth = os.environ.get(AUTH_ENV, "")
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def headers(self, record: dict[str, Any]) -> dict[str, str]:
        answered = time.gmtime(record["answered"])
        millis = int(record["answered"] % 1 * 1000)
        feedback = record.get("type") == "feedback"
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            # A feedback event labels the request of the same id: its own id and type.
            "ce-id": record["id"] + ("/feedback" if feedback else ""),
            "ce-type": FEEDBACK_TYPE if feedback else CLOUDEVENT_TYPE,
            "ce-source": self.source,
            "ce-time": time.strftime("%Y-%m-%dT%H:%M:%S", answered) + f".{millis:03d}Z",
            # KServe's extension attributes, so its consumers can route on them
            "ce-inferenceservicename": record["model_name"],
            "ce-endpoint": record["track"],
        }
        if self.auth:
            headers["authorization"] = self.auth
        return headers

    def write(self, line: bytes, record: dict[str, Any]) -> int:
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=line, headers=self.headers(record))
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SinkFailed(f"CloudEvents sink {self.host}:{self.port}: {exc}", 1) from exc
        if not 200 <= response.status < 300:
            raise SinkFailed(f"CloudEvents sink answered HTTP {response.status}", 1)
        return 1

    def tick(self) -> int:
        return 0

    def close(self) -> int:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return 0


class ObjectStoreSink:
    """Batches of records as JSON Lines objects ``<url>/<day>/<name>-<time>-<pid>-<n>.jsonl``;
    an object is written when its batch reaches ``max_bytes`` or is ``flush_s`` old."""

    def __init__(self, url: str, name: str, max_bytes: int, flush_s: float) -> None:
        from .batch.store import filesystem  # the batch extra: fsspec + s3fs

        self.fs, self.root = filesystem(url)
        self.name = name
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self._lines: list[bytes] = []
        self._size = 0
        self._first = 0.0
        self._seq = 0

    def write(self, line: bytes, record: dict[str, Any]) -> int:
        if not self._lines:
            self._first = time.monotonic()
        self._lines.append(line)
        self._size += len(line)
        return self._flush() if self._size >= self.max_bytes else 0

    def tick(self) -> int:
        if self._lines and time.monotonic() - self._first >= self.flush_s:
            return self._flush()
        return 0

    def close(self) -> int:
        return self._flush() if self._lines else 0

    def _flush(self) -> int:
        lines, self._lines, self._size = self._lines, [], 0
        self._seq += 1
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        key = f"{self.root}/{day}/{self.name}-{stamp}-{os.getpid()}-{self._seq:06d}.jsonl"
        try:
            with self.fs.open(key, "wb") as f:
                f.write(b"".join(lines))
        except Exception as exc:  # any storage library's error: the batch is lost, counted
            raise SinkFailed(f"cannot write {key}: {exc}", len(lines)) from exc
        return len(lines)


def open_sink(
    url: str,
    *,
    base: str,
    max_bytes: int,
    backups: int,
    timeout_s: float,
    flush_s: float,
    source: str,
) -> Sink:
    """The sink for ``url``: a directory (or file://), http(s):// or an fsspec URL (s3://...)."""
    kind = sink_kind(url)
    if kind == "file":
        path = urlsplit(url).path if url.lower().startswith("file://") else url
        return JsonlFileSink(Path(path), base, max_bytes, backups)
    if kind == "http":
        return CloudEventsSink(url, timeout_s, source)
    return ObjectStoreSink(url, base, max_bytes, flush_s)
