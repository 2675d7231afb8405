"""The run's manifest: a journal of committed shards in the output folder.

Local folder: `_manifest.jsonl`, line 1 is the run's fingerprint (model sha256, input files with
size and mtime, shard size, batch size, output format, options that change results); every later
line is one committed shard, appended and fsynced only after the shard's files were renamed into
place. A kill -9 can leave at most a torn last line, which is dropped on the next open; a shard
renamed but not yet journaled is simply done again and renamed over itself (same name, same
rows, same bytes), so every input row is in the output exactly once.

Object storage (no append): the manifest object holds the fingerprint only, and each committed
shard is one marker object `_journal/<manifest>/<shard>.json`, written (one PUT) after the shard's
objects are in place.

A sharded run (pod i of N, an Indexed Job) journals into `_manifest-IIIII-of-NNNNN.jsonl`: every
pod has its own journal in the shared output folder, and the shard names are the ones an
unsharded run would write, so the union of the pods' shards is the unsharded output.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from .errors import BatchError
from .sinks import LocalFolder, fsync_dir
from .storage_errors import storage

MANIFEST = "_manifest.jsonl"
SUCCESS = "_SUCCESS.json"
REJECTS_DIR = "_rejects"
JOURNAL_DIR = "_journal"


def manifest_name(index: int, count: int) -> str:
    return MANIFEST if count <= 1 else f"_manifest-{index:05d}-of-{count:05d}.jsonl"


def success_name(index: int, count: int) -> str:
    return SUCCESS if count <= 1 else f"_SUCCESS-{index:05d}-of-{count:05d}.json"


def _ours(name: str, sharded: bool) -> bool:
    """A name a (sharded) run writes: other pods' shards, journals and markers."""
    if name.startswith(".tmp-"):
        return True
    return sharded and name.split("/")[0].startswith(("part-", "_"))


class Journal:
    def __init__(
        self,
        folder: Any,
        fingerprint: dict[str, Any],
        done: dict[str, dict[str, Any]],
        name: str = MANIFEST,
        tag: str = "",
    ) -> None:
        self.folder, self.fingerprint, self.done = folder, fingerprint, done
        self.name, self.tag = name, tag
        self.local = isinstance(folder, LocalFolder)
        self._handle: Any = None

    @classmethod
    def open(
        cls,
        folder: Any,
        fingerprint: dict[str, Any],
        dry_run: bool = False,
        name: str = MANIFEST,
        tag: str = "",
    ) -> Journal:
        """`folder`: a LocalFolder or a store.RemoteFolder; `tag`: this pod's temporaries."""
        sharded = name != MANIFEST
        raw = folder.read(name)
        if raw is None:
            if cls._names(folder) and any(not _ours(n, sharded) for n in cls._names(folder)):
                raise BatchError(
                    f"output folder {str(folder)!r} is not empty and holds no {name}; expected "
                    "a new or empty folder (or the folder of an earlier run of this same command)"
                )
            journal = cls(folder, fingerprint, {}, name, tag)
            if not dry_run:
                header = (json.dumps({"fingerprint": fingerprint}) + "\n").encode()
                folder.commit(name, lambda handle: handle.write(header), tag)
            return journal
        lines = raw.split(b"\n")
        try:
            header = json.loads(lines[0])["fingerprint"]
        except (ValueError, KeyError, TypeError):
            raise BatchError(
                f"{folder}/{name} is not a batch manifest (its first line is not a fingerprint)"
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
        if not isinstance(folder, LocalFolder):
            for rel in folder.names(f"{JOURNAL_DIR}/{name}"):
                data = folder.read(rel)
                try:
                    entry = json.loads(data or b"")
                    done[entry["shard"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # not a marker of ours: the shard is redone
            return cls(folder, fingerprint, done, name, tag)
        good_bytes = len(lines[0]) + 1
        # lines[-1] follows the last newline: empty, or an unterminated fragment of a torn write.
        for line in lines[1:-1]:
            try:
                entry = json.loads(line)
                done[entry["shard"]] = entry
            except (ValueError, KeyError, TypeError):
                break  # a torn last line from a kill: everything after it is not committed
            good_bytes += len(line) + 1
        journal = cls(folder, fingerprint, done, name, tag)
        if good_bytes < len(raw) and not dry_run:
            path = folder.root / name
            with storage(str(path), "repair"), open(path, "r+b") as handle:
                handle.truncate(good_bytes)
                os.fsync(handle.fileno())
        return journal

    @staticmethod
    def top_names(folder: Any) -> list[str]:
        """Names at the top of the output folder (other pods' journals among them)."""
        return sorted({n.split("/")[0] for n in Journal._names(folder)})

    @staticmethod
    def _names(folder: Any) -> list[str]:
        if isinstance(folder, LocalFolder):
            with storage(str(folder.root), "list"):
                return [p.name for p in folder.root.iterdir()] if folder.root.is_dir() else []
        return folder.names()

    def clean_temporaries(self) -> None:
        """Temporaries of this run (this pod's tag) left by a kill."""
        if not self.local:
            self.folder.clean_temporaries(self.tag)
            return
        for folder in (self.folder.root, self.folder.root / REJECTS_DIR):
            if folder.is_dir():
                for stale in folder.glob(f".tmp-{self.tag}*"):
                    with storage(str(stale), "delete"):
                        stale.unlink(missing_ok=True)

    def commit(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry) + "\n").encode()
        if not self.local:
            self.folder.put(f"{JOURNAL_DIR}/{self.name}/{entry['shard']}.json", line)
        else:
            # A line cut short by a full disk is a torn last line: dropped by the next open.
            with storage(str(self.folder.root / self.name), "append to"):
                if self._handle is None:
                    # kept open for the whole run: one append + fsync per shard
                    self._handle = (self.folder.root / self.name).open("ab")
                self._handle.write(line)
                self._handle.flush()
                os.fsync(self._handle.fileno())
        self.done[entry["shard"]] = entry

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            # unbuffered bytes of a line that failed to append: the error was already raised
            with contextlib.suppress(OSError):
                handle.close()
        if self.local:
            fsync_dir(self.folder.root)
