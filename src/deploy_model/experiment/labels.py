"""Ground truth: a labels file joined to the payload log by request id.

The design: whoever learns the truth (a person reviewing, a later business event, a delayed
outcome) appends `request_id,label` rows to a file, CSV with that header or JSON Lines objects
{"request_id": ..., "label": ...}; `experiment analyze --labels FILE` joins it to the logged
requests by id. A batch request's label is a list, one value per row. Labels may arrive late and
partly: a request without a label is left out (and counted), a label without a logged request is
counted as unmatched. The same id labelled twice with different values is refused.

Or the server's feedback endpoint (POST /v2/models/{name}/feedback, {"id", "label"}) takes the
truth, and with payload logging on appends it to the log as records of "type": "feedback":
`--labels` may then name the payload log itself (a file or a folder of them), and without
`--labels` the log's own feedback records are the labels. The log's request records are skipped.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.experiment.payloads import is_request_record, payload_files, read_text

ID_KEYS = ("request_id", "id")
LABEL_KEYS = ("label", "truth", "y")


def _scalar(text: str) -> Any:
    """A CSV cell as a number when it reads as one (class 1 is 1 whatever the file's type)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if k in row and row[k] not in (None, "")), None)


def _rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not set(reader.fieldnames) & set(ID_KEYS) or not set(reader.fieldnames) & set(LABEL_KEYS):
            raise StageError(f"labels file {path}: the CSV header must name request_id and label, "
                             f"got {reader.fieldnames}")
        return [(i + 2, {k: _scalar(v) if k in LABEL_KEYS else v for k, v in row.items()})
                for i, row in enumerate(reader)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise StageError(f"labels file {path}, line {number}: not JSON (expected one object per line, "
                             '{"request_id": ..., "label": ...}, or a .csv with that header)') from None
        if not isinstance(row, dict):
            raise StageError(f"labels file {path}, line {number}: a JSON object is expected, got {type(row).__name__}")
        if not is_request_record(row):  # a payload log's requests beside its feedback records
            rows.append((number, row))
    return rows


def _file_rows(paths: tuple[Path, ...]) -> list[tuple[str, dict[str, Any]]]:
    """Every row of the labels files, or of each payload log file in a folder, with where it is."""
    rows = []
    for path in paths:
        if not path.exists():
            raise StageError(f"labels file {path} does not exist (expected a CSV, JSON Lines or a payload log)")
        for file in payload_files([path]) if path.is_dir() else [path]:
            try:
                text = read_text(file)
            except (OSError, UnicodeDecodeError, EOFError) as exc:
                raise StageError(f"labels file {file} could not be read: {exc}") from None
            where = f"{file.name}, line" if path.is_dir() or len(paths) > 1 else "line"
            rows += [(f"{where} {number}", row) for number, row in _rows(file, text)]
    return rows


def read_labels(path: Path, *more: Path) -> dict[str, Any]:
    """request id -> label (a scalar, or a list for a batch request), from one file or folder or
    several (the files of a payload log)."""
    labels: dict[str, Any] = {}
    problems = []
    for number, row in _file_rows((path, *more)):
        rid, label = _first(row, ID_KEYS), _first(row, LABEL_KEYS)
        if rid is None or label is None:
            problems.append(f"{number}: needs a request_id and a label, got keys {sorted(row)}")
            continue
        rid = str(rid)
        if rid in labels and labels[rid] != label:
            problems.append(f"{number}: request {rid!r} labelled {labels[rid]!r} before and {label!r} now")
            continue
        labels[rid] = label
    if problems:
        raise StageError(f"labels file {path} has {len(problems)} bad line(s)", problems)
    if not labels:
        raise StageError(f"labels file {path} holds no label (expected request_id,label rows)")
    return labels
