"""Object storage (s3://, gs://, az://) for the batch runner's input and output, through fsspec.

Credentials come from the environment the way each library reads them (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL for S3, GOOGLE_APPLICATION_CREDENTIALS for GCS,
AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME + key for Azure): in Kubernetes a
Secret mapped into the pod's env. Object stores have no rename, so a commit writes the whole
shard to a temporary key (a name starting with '.'), copies it to its final key and deletes the
temporary one; the shard counts as committed only once its journal marker, written last, exists.
A reader that lists final keys never sees half a shard, and a retry redoes any shard without a
marker (same name, same rows, same bytes).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from .errors import BatchError
from .storage_errors import StorageError, classify, http_status, storage

# scheme -> (the fsspec implementation's package, the name to pip install)
SCHEMES = {
    "s3": ("s3fs", "s3fs"),
    "s3a": ("s3fs", "s3fs"),
    "gs": ("gcsfs", "gcsfs"),
    "gcs": ("gcsfs", "gcsfs"),
    "az": ("adlfs", "adlfs"),
    "abfs": ("adlfs", "adlfs"),
    "abfss": ("adlfs", "adlfs"),
}


def is_remote(spec: str) -> bool:
    return urlparse(spec).scheme.lower() in SCHEMES


def filesystem(spec: str) -> tuple[Any, str]:
    """(fsspec filesystem, path without the scheme) for an object-storage URL."""
    scheme = urlparse(spec).scheme.lower()
    package, pip_name = SCHEMES[scheme]
    try:
        import fsspec
    except ImportError:
        raise BatchError(
            f"{spec!r} is a {scheme}:// URL, which needs fsspec and {pip_name}; install them "
            f"(pip install 'onnxserve[batch]' {pip_name}) or mount the storage as a local folder"
        ) from None
    try:
        __import__(package)
    except ImportError:
        raise BatchError(
            f"{spec!r} is a {scheme}:// URL, which needs the package {pip_name!r}; "
            f"install it (pip install {pip_name}) or mount the storage as a local folder"
        ) from None
    options: dict[str, Any] = {}
    if package == "s3fs":
        # S3-compatible stores (MinIO, Ceph, a local test server): botocore reads
        # AWS_ENDPOINT_URL itself only in recent versions, so it is passed explicitly too.
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        # a fresh instance per run: fsspec caches listings, and other pods write the same prefix
        options["skip_instance_cache"] = True
        options["use_listings_cache"] = False
    fs, path = fsspec.core.url_to_fs(spec, **options)
    return fs, path.rstrip("/")


def _suffix(name: str) -> str:
    return posixpath.splitext(name)[1].lower()


def find_remote_inputs(spec: str, formats: dict[str, str]) -> tuple[Any, str, list[str]]:
    """(fs, base path, input files sorted) for an object-storage file or prefix."""
    fs, path = filesystem(spec)
    try:
        if fs.isfile(path):
            if _suffix(path) not in formats:
                raise BatchError(
                    f"input {spec!r} has suffix {_suffix(path)!r}; expected one of "
                    f"{', '.join(sorted(formats))}"
                )
            return fs, posixpath.dirname(path), [path]
        found = fs.find(path)
    except BatchError:
        raise
    except Exception as exc:  # botocore/gcsfs/adlfs raise their own types (auth, no bucket)
        _raise_storage(exc, spec, "list")
        raise BatchError(f"cannot list input {spec!r}: {_short(exc)}{_hint(spec)}") from None
    files = sorted(
        p
        for p in found
        if _suffix(p) in formats
        and not any(part.startswith((".", "_")) for part in posixpath.relpath(p, path).split("/"))
    )
    if not files:
        raise BatchError(
            f"input {spec!r} holds no input file; expected objects ending in "
            f"{', '.join(sorted(formats))} (names starting with '.' or '_' are ignored)"
        )
    return fs, path, files


def _hint(spec: str) -> str:
    scheme = urlparse(spec).scheme.lower()
    env = {
        "s3fs": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for non-AWS S3)",
        "gcsfs": "GOOGLE_APPLICATION_CREDENTIALS",
        "adlfs": "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME + _KEY",
    }[SCHEMES[scheme][0]]
    return f" (credentials are read from the environment: {env})"


def _raise_storage(exc: BaseException, spec: str, action: str) -> None:
    """Raise StorageError when the store answered an HTTP error (403, 5xx): exit 74, re-run."""
    what = classify(exc)
    if what is not None and http_status(exc) is not None:
        raise StorageError(spec, action, what) from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class RemoteFolder:
    """The output 'folder' on object storage: keys under a prefix, written whole."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.rstrip("/")
        self.fs, self.root = filesystem(spec)

    def __str__(self) -> str:
        return self.spec

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def names(self, rel: str = "") -> list[str]:
        """Keys under root/rel, relative to root (recursive); [] when there are none."""
        base = self.key(rel) if rel else self.root
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as exc:
            _raise_storage(exc, self.spec, "list")
            raise BatchError(
                f"cannot list output {self.spec!r}: {_short(exc)}{_hint(self.spec)}"
            ) from None
        return sorted(posixpath.relpath(p, self.root) for p in found)

    def url(self, rel: str) -> str:
        return f"{self.spec}/{rel}"

    def read(self, rel: str) -> bytes | None:
        with storage(self.url(rel), "read"):
            try:
                return self.fs.cat_file(self.key(rel))
            except FileNotFoundError:
                return None

    def exists(self, rel: str) -> bool:
        with storage(self.url(rel), "read"):
            return bool(self.fs.exists(self.key(rel)))

    def commit(self, rel: str, write: Callable[[Any], Any], tag: str = "") -> None:
        """Write the whole object under a temporary key, copy it to `rel`, delete the temporary."""
        buffer = io.BytesIO()
        write(buffer)
        folder, name = posixpath.split(rel)
        tmp = posixpath.join(folder, f".tmp-{tag}{name}")
        with storage(self.url(rel), "write"):
            self.fs.pipe_file(self.key(tmp), buffer.getvalue())
            try:
                self.fs.copy(self.key(tmp), self.key(rel))
            except Exception:
                # best effort: a temporary left behind is hidden and cleaned by the next run
                with contextlib.suppress(Exception):
                    self.fs.rm_file(self.key(tmp))
                raise
            self.fs.rm_file(self.key(tmp))

    def put(self, rel: str, data: bytes) -> None:
        """One small object in a single PUT (atomic on object stores): journal markers."""
        with storage(self.url(rel), "write"):
            self.fs.pipe_file(self.key(rel), data)

    def delete(self, rel: str) -> None:
        with storage(self.url(rel), "delete"), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.key(rel))

    def clean_temporaries(self, tag: str) -> None:
        for rel in self.names():
            if posixpath.basename(rel).startswith(f".tmp-{tag}"):
                self.delete(rel)


def fingerprint_entry(fs: Any, path: str, rel: str) -> list[Any]:
    """[name, size, version] of an input object: a changed object refuses a resume."""
    info = fs.info(path)
    version = (
        info.get("ETag")
        or info.get("etag")
        or info.get("md5Hash")
        or info.get("generation")
        or str(info.get("LastModified") or info.get("mtime") or info.get("last_modified"))
    )
    return [rel, info.get("size"), json.loads(json.dumps(version, default=str))]


def urls_overlap(input_url: str, output_url: str) -> bool:
    """Whether the output prefix lies inside the input prefix (a re-run would read its output)."""
    a, b = input_url.rstrip("/") + "/", output_url.rstrip("/") + "/"
    return b.startswith(a)
