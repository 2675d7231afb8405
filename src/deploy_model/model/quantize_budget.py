"""Which rows quantize compares and how many share a run: from byte sizes alone, never from a clock.

The agreement figure depends on which rows are compared and, for dynamic INT8 (activation scales
computed at run time over the whole run), on how many rows share a run. Both follow from the model
and its inputs only, so the same model and sample give the same figure on any host, idle or busy:

- chunk (rows per run of both models): as many as keep one chunk's inputs and outputs, on both
  models, within CHUNK_BYTES (32 MiB), at most MAX_CHUNK_ROWS (256);
- rows: --samples, cut for a large model to WEIGHT_ROW_BYTES / its stored size (a 100 MB model
  compares 100 rows) and to IO_BYTES (1 GiB) of inputs and outputs per model, never below
  MIN_ROWS (16) unless --samples asks fewer. Work per row grows with the model's weights and
  with what it reads and writes, so the comparison stays bounded on a big model without a timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.model.quantize_agreement import original_rejects
from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_graph import stored_bytes

CHUNK_BYTES = 32 * 1024 * 1024  # inputs + outputs of one compared chunk, both models
MAX_CHUNK_ROWS = 256
WEIGHT_ROW_BYTES = 10 * 10**9  # model bytes x rows compared: 10 GB
IO_BYTES = 2**30  # inputs + outputs of every compared row, per model
MIN_ROWS = 16


@dataclass(frozen=True)
class ComparePlan:
    """How the comparison runs: rows per chunk, most rows (feeds) compared, and why that many."""

    chunk: int
    rows: int
    model_bytes: int
    row_bytes: int  # inputs + outputs of one row (or feed), one model

    def figures(self, asked: int) -> dict[str, Any]:
        """For quantization.json: the figures the rule was applied to and what it gave."""
        return {"chunk_rows": self.chunk, "rows_cap": self.rows, "rows_asked": asked,
                "model_bytes": self.model_bytes, "row_bytes": self.row_bytes,
                "rule": (f"at most --samples ({asked}), {WEIGHT_ROW_BYTES:,} / model bytes and {IO_BYTES:,} / row "
                         f"bytes, at least {MIN_ROWS}; chunks of at most {MAX_CHUNK_ROWS} rows within "
                         f"{CHUNK_BYTES:,} bytes on both models: no timing")}


def _nbytes(value: Any) -> int:
    """Rough memory of one output or input value (ZipMap rows are Python dicts: ~100 B an entry)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.dtype != object else int(value.size) * 64
    if isinstance(value, list):
        return sum(len(row) * 100 if isinstance(row, dict) else 64 for row in value)
    return 64


def compare_plan(original: Any, model: Path, feeds: Feeds, samples: int) -> ComparePlan:
    """Run the original on one row (which also proves it accepts the inputs) and size the comparison."""
    one = feeds.first(1)
    try:
        outs = original.run(None, one)
    except Exception as exc:  # onnxruntime has its own exception types
        raise original_rejects(feeds, one, exc) from None
    per_row = max(sum(_nbytes(v) for v in one.values()) + sum(_nbytes(v) for v in outs), 1)
    size = stored_bytes(model)
    chunk = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (2 * per_row))) if feeds.batched else 1
    cap = max(MIN_ROWS, min(WEIGHT_ROW_BYTES // max(size, 1), IO_BYTES // per_row))
    return ComparePlan(chunk=int(chunk), rows=int(min(samples, cap)), model_bytes=size, row_bytes=per_row)
