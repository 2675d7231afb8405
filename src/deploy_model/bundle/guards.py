"""What `render` and `deploy` check about their --out before writing: one writer at a time
(dirlock), and nothing of the user's replaced without --force (ownership)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from deploy_model.bundle.ownership import refuse_foreign
from deploy_model.common.dirlock import DirectoryLock
from deploy_model.common.errors import StageError

T = TypeVar("T")


def hold(directory: Path, verb: str, force: bool) -> DirectoryLock:
    """Lock the directory for `verb` and refuse (StageError) when it holds files of the user's
    that a render would replace; the caller releases the lock."""
    from deploy_model.bundle.render import OWNED_DIRS

    lock = DirectoryLock(directory, verb).acquire()
    try:
        refuse_foreign(directory, OWNED_DIRS, None, force)
    except BaseException:
        lock.release()
        raise
    return lock


def locked(directory: Path, verb: str, work: Callable[[], T]) -> T:
    """Run work() holding the directory's lock (StageError when another run holds it)."""
    with DirectoryLock(directory, verb):
        return work()


def io_refusal(stage: str, exc: OSError) -> StageError:
    """An OSError of a stage as the refusal the user reads (not 'internal error: OSError')."""
    where = exc.filename or "the deployment directory"
    extra = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
    return StageError(f"cannot write or read {where}{extra}: {exc.strerror or exc} (expected a writable "
                      "deployment directory; choose another --out or fix its permissions)")
