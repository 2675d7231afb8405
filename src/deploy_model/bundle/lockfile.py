"""requirements.lock for the container: the reference server's dependency closure, pinned exactly.

The pins are the versions installed beside this tool, the ones the test suite and the local
`serve` stage really ran, so the image runs what was measured. The closure is walked through the
installed distributions' metadata, with environment markers evaluated for the container (Linux,
CPython, the image's Python version). Run by bin/deploy-model, whose venv starts with the core
group only, a closure that needs more (pyarrow for a batch image, redis for workers) first
installs the group that locks it, from the plugin's hashed locks; elsewhere nothing is installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy_model.common import launcher_groups
from deploy_model.common.errors import StageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

# The container's interpreter; markers are evaluated for it, not for this machine.
IMAGE_PYTHON = "3.11"
MARKER_ENV = {
    "python_version": IMAGE_PYTHON,
    "python_full_version": IMAGE_PYTHON + ".13",  # the patch release of context_workload.PYTHON_IMAGE
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
}
GPU_SWAP = {"onnxruntime": "onnxruntime-gpu"}  # same import name, CUDA/TensorRT providers built in


def server_requirements(server_dir: Path, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The direct dependencies of the reference server (its pyproject, else its installed metadata)."""
    pyproject = server_dir / "pyproject.toml"
    raw: list[str]
    if tomllib is not None and pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        raw = list(project.get("dependencies", []))
        for extra in extras:
            raw += project.get("optional-dependencies", {}).get(extra, [])
    else:
        try:
            raw = [r for r in metadata.requires("onnxserve") or [] if _wanted(Requirement(r), extras)]
        except metadata.PackageNotFoundError:
            raise StageError("the reference server (onnxserve) is neither beside this tool nor installed") from None
    return [Requirement(r) for r in raw]


def _wanted(req: Requirement, extras: tuple[str, ...]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**MARKER_ENV, "extra": e}) for e in ("", *extras))


def closure(requirements: list[Requirement]) -> dict[str, str]:
    """Name -> installed version for the requirements and everything they need, here."""
    pins, missing, absent = _walk(requirements)
    if absent and launcher_groups.install_missing(absent):
        pins, missing, absent = _walk(requirements)
    if missing:
        raise StageError(
            "cannot pin the reference server's dependencies: not installed beside deploy-model",
            [f"{m}: install the reference server with `pip install ./reference-server`" for m in sorted(missing)],
        )
    return pins


def _walk(requirements: list[Requirement]) -> tuple[dict[str, str], list[str], set[str]]:
    """(pins, requirements not met, names of those not installed at all) of the closure, here."""
    pins: dict[str, str] = {}
    missing: list[str] = []
    absent: set[str] = set()
    queue = [(r, ()) for r in requirements]
    while queue:
        req, extras = queue.pop()
        if req.marker is not None and not _evaluates(req.marker, extras):
            continue
        key = canonicalize_name(req.name)
        if key in pins:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            absent.add(key)
            continue
        if dist.version not in req.specifier and req.specifier:
            missing.append(f"{req} (installed {dist.version})")
            continue
        pins[key] = dist.version
        for sub in dist.requires or []:
            queue.append((Requirement(sub), tuple(req.extras)))
    return pins, missing, absent


def _evaluates(marker: Marker, extras: tuple[str, ...]) -> bool:
    return any(marker.evaluate({**MARKER_ENV, "extra": e}) for e in ("", *extras))


def lock_text(pins: dict[str, str], gpu: bool, header: str) -> str:
    lines = [header.rstrip("\n")]
    for name in sorted(pins):
        dist = GPU_SWAP.get(name, name) if gpu else name
        lines.append(f"{dist}=={pins[name]}")
    return "\n".join(lines) + "\n"


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def parse_lock(text: str) -> dict[str, str]:
    """Pins of a lock file; raises ValueError naming a line that is not an exact pin."""
    pins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            raise ValueError(f"line {number} {line!r} is not an exact pin NAME==VERSION")
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins
