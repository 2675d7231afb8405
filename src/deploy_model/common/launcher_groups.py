"""Install a dependency group of the launcher's environment from inside a stage (render, convert) that finds it missing."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

from deploy_model.common.errors import StageError

# bin/deploy-model sets these for the venv it runs (never with DEPLOY_MODEL_PYTHON): a stage may
# then complete that venv the way the launcher does, with requirements/install.py.
DATA_ENV = "DEPLOY_MODEL_ENV_DATA"  # the plugin's data directory, holding the venv
PYTHON_ENV = "DEPLOY_MODEL_ENV_PYTHON"  # the base python the launcher runs install.py with
REQUIREMENTS_ENV = "DEPLOY_MODEL_ENV_REQUIREMENTS"  # the plugin's requirements/ (hashed group locks)

PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.M)
NOT_GROUPS = ("core", "uv")  # core is always installed; uv.txt is the installer, not a group


def groups_pinning(names: set[str], requirements: Path) -> list[str]:
    """The launcher's groups (other than core) whose hashed locks pin these distributions."""
    # Every group's lock holds the core too: a core distribution is the launcher's to install.
    wanted = {canonicalize_name(n) for n in names} - _pinned(requirements / "core.txt")
    groups: list[str] = []
    for lock in sorted(requirements.glob("*.txt")):
        if lock.stem in NOT_GROUPS or not wanted:
            continue
        pinned = _pinned(lock)
        if wanted & pinned:
            groups.append(lock.stem)
            wanted -= pinned
    return groups


def _pinned(lock: Path) -> set[str]:
    text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    return {canonicalize_name(n) for n in PINNED.findall(text)}


def install_missing(names: set[str]) -> bool:
    """Install the groups that lock `names` into the launcher's venv (its progress on stderr).

    False when this process is not the launcher's venv or no group locks them; raises when the
    install fails. Why here: a stage learns what it needs only once it has read the plan (render
    of a batch plan pins pyarrow for the image), which the launcher cannot know beforehand.
    """
    data, python, requirements = (os.environ.get(v, "") for v in (DATA_ENV, PYTHON_ENV, REQUIREMENTS_ENV))
    if not (data and python and requirements and Path(requirements, "install.py").is_file()):
        return False
    groups = groups_pinning(names, Path(requirements))
    if not groups:
        return False
    # stdout is kept apart: a --json stage's stdout holds its JSON only.
    proc = subprocess.run([python, str(Path(requirements, "install.py")), "--data", data, *groups],
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.stdout:
        print(proc.stdout, end="", file=sys.stderr)
    if proc.returncode != 0:
        raise StageError(f"installing the {' and '.join(groups)} group of the plugin's environment failed "
                         f"(install.py exited {proc.returncode})",
                         ["its own error is above; run the command again once the cause is fixed"])
    importlib.invalidate_caches()  # the distributions just installed must be found by importlib.metadata
    return True
