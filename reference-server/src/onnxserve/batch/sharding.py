"""Which pod scores which shard when a batch is spread over N pods (an Indexed Job).

The shards are the ones an unsharded run cuts (chunk k of file f, `shard_rows` rows each), numbered
in input order; pod i takes a contiguous run of about 1/N of them, so a single big file is split
by row range and a folder of files by file. The split depends only on the input's row counts and
the options (both in the run's fingerprint), so every pod, and every retry of a pod, computes the
same disjoint split, and the union of the pods' shards is the unsharded run's output.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import BatchError


class Owners:
    def __init__(self, counts: list[int | None], shard_rows: int, shard_count: int) -> None:
        self.shard_rows, self.n = shard_rows, shard_count
        self.counts = [c or 0 for c in counts]
        # csv/jsonl counts are line counts (an estimate): a file holding more chunks than counted
        # gives its extra chunks to the owner of its last counted one, so every chunk has one.
        self.chunks = [max(1, math.ceil(c / shard_rows)) for c in self.counts]
        self.offsets = [0]
        for chunks in self.chunks:
            self.offsets.append(self.offsets[-1] + chunks)
        self.total = self.offsets[-1]

    def owner(self, file_index: int, chunk_index: int) -> int:
        if self.n == 1:
            return 0
        unit = self.offsets[file_index] + min(chunk_index, self.chunks[file_index] - 1)
        return min(self.n - 1, unit * self.n // self.total)

    def file_has(self, file_index: int, index: int) -> bool:
        # owners grow with the chunk number: a file's pods are those between its first and last
        first, last = self.owner(file_index, 0), self.owner(file_index, self.chunks[file_index] - 1)
        return first <= index <= last

    def _owned(self, index: int) -> list[tuple[int, int]]:
        return [
            (f, k)
            for f in range(len(self.chunks))
            if self.file_has(f, index)
            for k in range(self.chunks[f])
            if self.owner(f, k) == index
        ]

    def shards_of(self, index: int) -> int:
        return sum(1 for f, k in self._owned(index) if k * self.shard_rows < self.counts[f])

    def rows_of(self, index: int) -> int:
        return sum(
            max(0, min(self.shard_rows, self.counts[f] - k * self.shard_rows))
            for f, k in self._owned(index)
        )


def finish_sharded(folder: Any, shard_count: int, success: str, tag: str) -> bool:
    """Write `success` for the whole output once every pod's marker is there; True if written.

    Each pod writes its own marker before looking at the others', so the last one to finish
    always sees all N (two finishing together both write the same totals: harmless).
    """
    from .manifest import success_name

    records = []
    for index in range(shard_count):
        data = folder.read(success_name(index, shard_count))
        if data is None:
            return False
        try:
            records.append(json.loads(data))
        except ValueError:
            raise BatchError(
                f"{folder}/{success_name(index, shard_count)} is not JSON; expected the summary "
                f"of pod {index}: delete it and re-run that pod"
            ) from None
    keys = ("rows", "scored", "rejected", "shards")
    total: dict[str, Any] = {k: sum(r.get(k, 0) for r in records) for k in keys}
    total["reject_ratio"] = round(total["rejected"] / total["rows"], 6) if total["rows"] else 0.0
    total["shard_count"] = shard_count
    total["parts"] = sorted(p for r in records for p in r.get("parts", []))
    total["pods"] = [{k: r.get(k) for k in (*keys, "seconds", "provider")} for r in records]
    data = (json.dumps(total, indent=2) + "\n").encode()
    folder.commit(success, lambda handle: handle.write(data), tag)
    return True
