"""The streaming section's example: how a producer sends one request to the event-driven workers and reads its answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.plan.spec import WORKER_GROUP, WORKER_STREAM
from deploy_model.report.examples import example_arrays


def worker_example(spec: Any, profile: dict[str, Any], directory: Path | None = None) -> dict[str, Any]:
    """How a producer talks to the event-driven workers: one request in, one answer out."""
    arrays, _ = example_arrays(profile, directory)
    inputs = {name: np.round(a.astype(np.float64), 4).tolist() if a.dtype.kind == "f" else
              (np.asarray(a).astype(str).tolist() if a.dtype.kind in ("U", "S", "O") else a.tolist())
              for name, a in arrays.items()}
    body = json.dumps({"id": "req-1", "inputs": inputs})
    lines = ["import json", "", "import redis", "",
             'r = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)',
             f"body = {body!r}",
             f'entry = r.xadd("{WORKER_STREAM}", {{"body": body}})',
             "# Each answer names the request entry it answers; read until ours arrives (bounded).",
             "last = \"0\"",
             "for _ in range(50):",
             '    for _, items in r.xread({"inference:results": last}, count=100, block=200) or []:',
             "        for last, fields in items:",
             '            if fields["request_id"] == entry:',
             '                outputs = json.loads(fields["outputs"])',
             '                print({name: len(rows) for name, rows in outputs.items()})',
             "                raise SystemExit(0)",
             'raise SystemExit("no answer within 10 s: are the workers running?")']
    return {"stream": WORKER_STREAM, "group": WORKER_GROUP, "results": "inference:results",
            "dead_letter": "inference:dead", "body": body, "python": "\n".join(lines)}
