"""Storage failures (full disk, read-only, permission, object-store HTTP errors) as StorageError.

The batch runner's commits are atomic, so a storage failure leaves only whole, journaled shards:
the fix is outside the command (free space, remount read-write, grant access, wait out the
store's 5xx) and then the same command resumes. StorageError says so in one line and has its own
exit code (see __main__.EXIT_STORAGE) instead of a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import BatchError

# errno -> what happened, in the words the message uses
ERRNO_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# pyarrow and some fsspec layers re-raise without an errno: the strerror text still says it
TEXT_WORDS = {
    "No space left on device": "no space left on device",
    "Disk quota exceeded": "disk quota exceeded",
    "Read-only file system": "read-only file system",
}


class StorageError(BatchError):
    """The storage refused a read or write at `path`; committed shards are kept, re-run resumes."""

    def __init__(self, path: str, action: str, what: str) -> None:
        super().__init__(f"cannot {action} {path}: {what}")
        self.path, self.action, self.what = path, action, what


def http_status(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, the store's error code and message) found along the exception's causes.

    s3fs turns botocore's ClientError into OSError/PermissionError/FileNotFoundError with the
    ClientError as __cause__; gcsfs raises HttpError(.code), adlfs azure's HttpResponseError
    (.status_code). Any of them, raw or wrapped, carries the status the store answered.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response: Any = getattr(current, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            error = response.get("Error", {})
            if isinstance(status, int) and status >= 400:
                # a HEAD answer has no body: botocore then reports the status as the code
                code = str(error.get("Code") or "")
                parts = [code if code != str(status) else "", str(error.get("Message") or "")]
                return status, ": ".join(p for p in parts if p)
        for name in ("status_code", "code", "status"):
            status = getattr(current, name, None)
            if isinstance(status, int) and 400 <= status <= 599:
                return status, _first_line(current)
        current = current.__cause__ or current.__context__
    return None


def classify(exc: BaseException) -> str | None:
    """What happened, in words, when `exc` is a storage failure; None for anything else."""
    if isinstance(exc, BatchError):
        return None
    status = http_status(exc)
    if status is not None:
        code, detail = status
        return f"object storage answered {code}" + (f" ({_cut(detail)})" if detail else "")
    if isinstance(exc, OSError):
        if exc.errno in ERRNO_WORDS:
            return ERRNO_WORDS[exc.errno]
        if isinstance(exc, PermissionError):
            return "permission denied"
        text = str(exc)
        for needle, words in TEXT_WORDS.items():
            if needle in text:
                return words
    return None


@contextmanager
def storage(path: str, action: str) -> Iterator[None]:
    """Turn a storage failure inside the block into StorageError(path); anything else passes."""
    try:
        yield
    except Exception as exc:
        what = classify(exc)
        if what is None:
            raise
        raise StorageError(path, action, what) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cut(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def remedy(error: StorageError) -> str:
    """What to fix before the re-run, from what happened."""
    what = error.what
    if what.startswith(("no space", "disk quota")):
        return "free space"
    if what.startswith("read-only"):
        return "make the volume writable again"
    if what.startswith("permission"):
        return f"grant {'write' if error.action != 'read' else 'read'} access"
    if what.startswith(("object storage answered 401", "object storage answered 403")):
        return "grant the credentials access"
    if what.startswith("object storage answered 5") or "answered 429" in what:
        return "wait for the store to recover"
    return "fix the storage"
