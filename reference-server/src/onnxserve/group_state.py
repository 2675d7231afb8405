"""One readiness for a ``--workers N`` group: each worker's state in a small file per slot.

The supervisor writes ``slot-<i>.state`` = ``loading`` for every slot before it starts the
workers, and ``restarting`` for a slot whose worker died and is being replaced. A worker then
writes its own state there (``loading``, ``restarting`` for a replacement, ``ready``,
``draining``, ``failed``) with its pid. The pod is ready when the answering worker is ready and
every slot is ``ready`` or ``restarting`` (a replacement loads without accepting connections, so
the survivors keep the pod serving). One process (no ``--workers``): no group, readiness as is.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .metrics_merge import ENV_DIR

ENV_SLOT = "ONNXSERVE_WORKER_SLOT"  # "<index>/<count>/<replacement 0|1>", set by the supervisor

LOADING, RESTARTING, READY, DRAINING, FAILED = (
    "loading",
    "restarting",
    "ready",
    "draining",
    "failed",
)


def slot_path(folder: Path, index: int) -> Path:
    return folder / f"slot-{index}.state"


def write_slot(folder: Path, index: int, state: str, pid: int) -> None:
    path = slot_path(folder, index)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{state} {pid}\n")
    os.replace(tmp, path)  # a reader never sees half a file


def read_slot(folder: Path, index: int) -> tuple[str, int]:
    """(state, pid) of a slot; a missing or unreadable file reads as loading."""
    try:
        state, pid = slot_path(folder, index).read_text().split()
        return state, int(pid)
    except (OSError, ValueError):
        return LOADING, 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class WorkerGroup:
    """This worker's slot in the group, and the group's state as the slot files say."""

    folder: Path
    index: int
    count: int
    replacement: bool

    def publish(self, state: str) -> None:
        with contextlib.suppress(OSError):  # a readiness file must never stop serving
            write_slot(self.folder, self.index, state, os.getpid())

    def states(self) -> list[str]:
        """Every slot's state; a worker that died while ``ready`` reads as ``restarting``."""
        out = []
        for i in range(self.count):
            state, pid = read_slot(self.folder, i)
            if i != self.index and state == READY and not _alive(pid):
                state = RESTARTING
            out.append(state)
        return out

    def all_ready(self) -> bool:
        """Every slot is serving or being replaced behind the survivors."""
        return all(s in (READY, RESTARTING) for s in self.states())

    def sibling_ready(self) -> bool:
        """Another worker is serving (so a replacement may load without accepting)."""
        return any(s == READY for i, s in enumerate(self.states()) if i != self.index)


def group_from_env() -> WorkerGroup | None:
    folder, slot = os.environ.get(ENV_DIR), os.environ.get(ENV_SLOT)
    if not folder or not slot:
        return None
    index, count, replacement = slot.split("/")
    return WorkerGroup(Path(folder), int(index), int(count), replacement == "1")
