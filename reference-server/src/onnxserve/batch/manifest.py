"""The run's manifest: an append-only journal of committed shards in the output folder.

`_manifest.jsonl`: line 1 is the run's fingerprint (model sha256, input files with size and
mtime, shard size, batch size, output format, options that change results); every later line
is one committed shard, appended and fsynced only after the shard's files were renamed into
place. A kill -9 can leave at most a torn last line, which is dropped on the next open; a shard
renamed but not yet journaled is simply done again and renamed over itself (same name, same
rows, same bytes), so every input row is in the output exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import BatchError
from .sinks import commit_bytes, fsync_dir

MANIFEST = "_manifest.jsonl"
SUCCESS = "_SUCCESS.json"
REJECTS_DIR = "_rejects"


class Journal:
    def __init__(
        self, folder: Path, fingerprint: dict[str, Any], done: dict[str, dict[str, Any]]
    ) -> None:
        self.folder, self.fingerprint, self.done = folder, fingerprint, done
        self.path = folder / MANIFEST
        self._handle: Any = None

    @classmethod
    def open(cls, folder: Path, fingerprint: dict[str, Any], dry_run: bool = False) -> Journal:
        path = folder / MANIFEST
        if not path.exists():
            if folder.exists() and any(
                p for p in folder.iterdir() if not p.name.startswith(".tmp-")
            ):
                raise BatchError(
                    f"output folder {str(folder)!r} is not empty and holds no {MANIFEST}; expected "
                    "a new or empty folder (or the folder of an earlier run of this same command)"
                )
            journal = cls(folder, fingerprint, {})
            if not dry_run:
                folder.mkdir(parents=True, exist_ok=True)
                header = (json.dumps({"fingerprint": fingerprint}) + "\n").encode()
                commit_bytes(path, lambda handle: handle.write(header))
            return journal
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        try:
            header = json.loads(lines[0])["fingerprint"]
        except (ValueError, KeyError, TypeError):
            raise BatchError(
                f"{path} is not a batch manifest (its first line is not a fingerprint)"
            ) from None
        if header != fingerprint:
            changed = sorted(
                k for k in set(header) | set(fingerprint) if header.get(k) != fingerprint.get(k)
            )
            raise BatchError(
                f"output folder {str(folder)!r} holds a run with different {', '.join(changed)}; "
                "resuming needs the same model, input files and options. Use a new --output folder "
                "to start over",
                [
                    f"{k}: earlier run {header.get(k)!r}, now {fingerprint.get(k)!r}"
                    for k in changed
                ][:10],
            )
        done: dict[str, dict[str, Any]] = {}
        good_bytes = len(lines[0]) + 1
        # lines[-1] follows the last newline: empty, or an unterminated fragment of a torn write.
        for line in lines[1:-1]:
            try:
                entry = json.loads(line)
                done[entry["shard"]] = entry
            except (ValueError, KeyError, TypeError):
                break  # a torn last line from a kill: everything after it is not committed
            good_bytes += len(line) + 1
        journal = cls(folder, fingerprint, done)
        if good_bytes < len(raw) and not dry_run:
            with open(path, "r+b") as handle:
                handle.truncate(good_bytes)
                os.fsync(handle.fileno())
        return journal

    def clean_temporaries(self) -> None:
        for folder in (self.folder, self.folder / REJECTS_DIR):
            if folder.is_dir():
                for stale in folder.glob(".tmp-*"):
                    stale.unlink(missing_ok=True)

    def commit(self, entry: dict[str, Any]) -> None:
        if self._handle is None:
            # kept open for the whole run: one append + fsync per shard
            self._handle = self.path.open("ab")
        self._handle.write((json.dumps(entry) + "\n").encode())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[entry["shard"]] = entry

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        fsync_dir(self.folder)
