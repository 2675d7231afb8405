"""Checks of a rendered bundle: each returns `Check` records (tool, file, verdict, message, rule)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    validator: str
    tool: str
    file: str
    verdict: str
    message: str = ""
    rule: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != ""}


def find_tool(name: str) -> str | None:
    """A tool beside this interpreter (the venv's bin) first, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


def load_docs(path: Path) -> list[Any]:
    """Every YAML document of a file (None documents dropped); raises yaml.YAMLError."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
