"""Read the server's payload log (JSON Lines, one record per sampled request) into typed records.

The format is the server's (onnxserve.payload_log, schema onnxserve.payload/v1); the fields
the analysis needs are named in FIELDS, each with the spellings it accepts, so the
log's format can move without the analysis changing. A record's outputs are V2 tensors
({"name", "datatype", "shape", "data"}); one logged as a hash and a shape (no "data") is kept but
cannot be scored. A line that is not JSON (a writer killed mid-line) is skipped and counted.
Feedback records ("type": "feedback", ground truth the server's feedback endpoint appended) are
not requests: they are counted in `feedback` and read as labels by `labels.read_labels`.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError

# What the analysis reads -> the keys that may hold it, first found wins. "a.b" is a nested key.
FIELDS: dict[str, tuple[str, ...]] = {
    "request_id": ("id", "request_id", "requestId", "request.id"),
    "model_name": ("model_name", "model", "request.model_name"),
    "model_version": ("model_version", "version", "request.model_version"),
    "track": ("track",),  # (the log's "endpoint" is the protocol, infer|predict|grpc, not the track)
    "received": ("received", "received_at", "start_time", "started_at", "timestamp", "time"),
    "answered": ("answered", "answered_at", "responded_at", "end_time", "finished_at"),
    "latency_ms": ("latency_ms", "duration_ms"),
    "outputs": ("outputs", "response.outputs"),
    "status": ("status", "status_code", "code"),
}
OK_STATUSES = {"200", "ok", "success", "0"}
PAYLOAD_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass
class PayloadRecord:
    """One logged request: which version and track answered it, when, how, and what it answered."""

    request_id: str
    model_name: str
    model_version: str
    track: str
    received: float | None  # epoch seconds
    answered: float | None
    latency_s: float | None
    ok: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PayloadLog:
    records: list[PayloadRecord]
    files: list[str]
    skipped_lines: int
    feedback: int = 0  # feedback records (labels) in the files


def _get(raw: dict[str, Any], name: str) -> Any:
    for key in FIELDS[name]:
        value: Any = raw
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def epoch_seconds(value: Any) -> float | None:
    """Epoch seconds from a number (s, ms, us or ns, told apart by size) or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number):
            return None
        # Today is about 1.7e9 s since 1970: 1.7e12 in ms, 1.7e15 in us, 1.7e18 in ns.
        for bound, divisor in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
            if abs(number) >= bound:
                return number / divisor
        return number
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    return None


def parse_record(raw: dict[str, Any]) -> PayloadRecord:
    """One JSON object of the log as a PayloadRecord (missing fields become '' / None)."""
    received, answered = epoch_seconds(_get(raw, "received")), epoch_seconds(_get(raw, "answered"))
    latency_ms = _get(raw, "latency_ms")
    if isinstance(latency_ms, (int, float)) and not isinstance(latency_ms, bool):
        latency: float | None = float(latency_ms) / 1000.0
    elif received is not None and answered is not None:
        latency = answered - received
    else:
        latency = None
    status = _get(raw, "status")
    outputs = _get(raw, "outputs")
    return PayloadRecord(
        request_id=str(_get(raw, "request_id") or ""),
        model_name=str(_get(raw, "model_name") or ""),
        model_version=str(_get(raw, "model_version") or ""),
        track=str(_get(raw, "track") or ""),
        received=received,
        answered=answered,
        latency_s=latency,
        ok=status is None or str(status).strip().lower() in OK_STATUSES,
        outputs=[o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else [],
    )


def payload_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and in a folder every *.jsonl, *.jsonl.N (rotated) and *.jsonl.gz, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and _is_payload_name(p.name))
        elif path.is_file():
            found.append(path)
        else:
            raise StageError(f"payload log {path} does not exist (expected a JSON Lines file or a folder of them)")
    return found


def _is_payload_name(name: str) -> bool:
    if name.endswith(PAYLOAD_SUFFIXES):
        return True
    stem, _, number = name.rpartition(".")
    return stem.endswith(".jsonl") and number.isdigit()


def is_request_record(raw: dict[str, Any]) -> bool:
    """A logged request of the server's schema (not a feedback record, not a labels row)."""
    return str(raw.get("schema", "")).startswith("onnxserve.payload/") and raw.get("type") != "feedback"


def read_text(path: Path) -> str:
    """A file's text, gunzipped when its name ends in .gz."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        yield from handle


def read_payloads(paths: Iterable[Path]) -> PayloadLog:
    """Every record of the payload log files (or folders); refuses when none holds a record."""
    files = payload_files(paths)
    records: list[PayloadRecord] = []
    skipped = feedback = 0
    for path in files:
        try:
            for line in _lines(path):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except ValueError:
                    skipped += 1
                    continue
                if isinstance(raw, dict) and raw.get("type") == "feedback":
                    feedback += 1
                elif isinstance(raw, dict):
                    records.append(parse_record(raw))
                else:
                    skipped += 1
        except (OSError, EOFError) as exc:
            raise StageError(f"payload log {path} could not be read: {exc}") from None
    if not records:
        raise StageError(f"no payload records in {', '.join(map(str, files)) or 'the paths given'}",
                         ["expected JSON Lines: one object per request with id, model_version, track, "
                          "received/answered timestamps, outputs and status"])
    return PayloadLog(records, [str(p) for p in files], skipped, feedback)
