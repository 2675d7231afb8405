"""What the user typed after /deploy-model: the model path first, then answers in their own words.

The command has the agent write that text verbatim into a file (`deploy/model/request.txt`) and
pass `@deploy/model/request.txt` as inspect's MODEL, so no shell quoting stands between the user
and the path: spaces, `~`, `$`, quotes all survive. The path is the longest leading part of the
text that names an existing file (so `my models/m.onnx rps 200` works), else the first word.
What follows it is handed back to the agent as answers it should use rather than ask again.
`deploy-model models` lists the model files of a project when the text names none.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError

MODEL_SUFFIXES = {".onnx", ".pt", ".pth", ".pt2", ".safetensors", ".h5", ".keras", ".pb", ".tflite",
                  ".pkl", ".joblib", ".mlmodel", ".gguf", ".bin", ".ckpt"}
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".cache", "deploy", ".tox", ".mypy_cache",
             "site-packages"}


def _expand(word: str) -> Path:
    return Path(os.path.expanduser(word))


def split_request(text: str, cwd: Path | None = None) -> tuple[str | None, str]:
    """(model path or None, the rest) of the text the user typed after the command."""
    text = text.strip()
    if not text:
        return None, ""
    base = cwd or Path.cwd()
    words = text.split()
    # Longest leading run of words that names an existing file (paths with spaces).
    for end in range(len(words), 0, -1):
        candidate = " ".join(words[:end])
        for form in (candidate, candidate.strip("'\"")):
            path = _expand(form)
            if (path if path.is_absolute() else base / path).is_file():
                return str(path), " ".join(words[end:])
    # A quoted first word ('my model.onnx' rest) that does not exist yet: shell rules, then as typed.
    try:
        first = shlex.split(text)[0]
    except (ValueError, IndexError):
        first = words[0]
    rest = text.split(first, 1)[1].strip(" '\"") if first in text else " ".join(words[1:])
    return str(_expand(first)), rest


def resolve_model_argument(model: Path) -> Path:
    """inspect's MODEL: `@FILE` reads the user's request from FILE; `~` is expanded either way."""
    from deploy_model.model.convert.model_names import is_plain_name, resolve_name

    raw = str(model)
    if not raw.startswith("@"):  # a name ("churn"), not a path: looked up among model files and the registry
        return Path(resolve_name(raw, find_models(Path.cwd()))[0]) if is_plain_name(raw, MODEL_SUFFIXES) else _expand(raw)
    source = Path(raw[1:])
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StageError(f"cannot read the request file {source}: {exc.strerror}; expected the text typed after "
                         "/deploy-model, written there with the Write tool") from None
    path, rest = split_request(text)
    if path is not None and is_plain_name(path, MODEL_SUFFIXES):
        return Path(resolve_name(text, find_models(Path.cwd()))[0])
    if path is None:
        found = find_models(Path.cwd())
        listing = ", ".join(found[:10]) if found else "none found under this directory"
        raise StageError(f"the request in {source} names no model file; model files here: {listing}; "
                         "ask the user which one (or where it is) and write its path into the request file")
    print(f"request: model {path}" + (f"; typed after it (answers to use, do not ask again): {rest}" if rest else ""),
          file=sys.stderr, flush=True)
    return Path(path)


def find_models(root: Path, limit: int = 200) -> list[str]:
    """Model files under root (relative paths, sorted), skipping VCS, environments and deploy/."""
    found: list[str] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if Path(name).suffix.lower() in MODEL_SUFFIXES:
                found.append(os.path.relpath(Path(current) / name, root))
                if len(found) >= limit:
                    return found
    return found


def run_models(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise StageError(f"--root {root} is not a directory")
    found = find_models(root)
    onnx = [p for p in found if p.lower().endswith(".onnx")]
    from deploy_model.model.convert.model_names import registry_candidates

    registered, searched = registry_candidates()  # MLFLOW_TRACKING_URI set: its registered models too
    return {"stage": "models", "ok": True, "root": str(root), "models": found,
            "registry": [c.location for c in registered],
            "summary": {"onnx": onnx or "none", "other formats (inspect/deploy convert them)":
                        [p for p in found if p not in onnx] or "none", "MLflow registry": searched}}
