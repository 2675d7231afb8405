"""A model named in words ("churn", "the churn model") found among the project's model files and the MLflow registry.

A name is a word that is neither an existing path nor a URI and has no model file suffix. Its
significant words (not "the", "model", ...) are matched, left to right, against each candidate's
path or registered name; words after the longest run that still matches are the user's answers.
One match is used (and said); several or none refuse in one line listing what there is, so the
command can ask the user which.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy_model.common.errors import StageError

STOPWORDS = {"the", "a", "an", "my", "our", "your", "this", "that", "model", "models", "please", "deploy", "of", "for"}
_LISTED = 10  # candidates a refusal lists before "... and N more"


@dataclass(frozen=True)
class Candidate:
    """A model the name may mean: a file (relative path) or a models:/NAME/VERSION URI."""

    location: str
    words: str  # lowercased alphanumeric runs of its path or name, space separated


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def is_plain_name(text: str, suffixes: set[str]) -> bool:
    """Whether the MODEL argument reads as a name rather than a path or a URI."""
    stripped = text.strip().strip("'\"")
    if not stripped or stripped.startswith(("models:/", "runs:/", "@", "~")) or "/" in stripped or os.sep in stripped:
        return False
    first = stripped.split()[0]
    return Path(first).suffix.lower() not in suffixes and not Path(stripped).exists() and not Path(first).exists()


def file_candidates(files: list[str]) -> list[Candidate]:
    return [Candidate(f, " ".join(_tokens(f))) for f in files]


def registry_candidates() -> tuple[list[Candidate], str]:
    """Registered models at MLFLOW_TRACKING_URI (as models:/NAME/LATEST), and what was searched, in words."""
    from deploy_model.model.convert.mlflow_registry import ENV, registered_models

    where = os.environ.get(ENV, "").strip()
    if not where:
        return [], f"no MLflow registry searched ({ENV} is not set)"
    try:
        found = registered_models()
    except StageError as exc:
        return [], f"the MLflow registry at {where} was not searched: {exc.message}"
    except Exception as exc:  # unreachable server: the files still answer
        return [], f"the MLflow registry at {where} was not searched: {' '.join(str(exc).split())[:200]}"
    return ([Candidate(f"models:/{name}/{version}", " ".join(_tokens(name))) for name, version in found],
            f"registered models at {where}: " + (", ".join(f"{n} (v{v})" for n, v in found) or "none"))


def _matching(candidates: list[Candidate], query: list[str]) -> list[Candidate]:
    return [c for c in candidates if all(q in c.words for q in query)]


def match_name(text: str, candidates: list[Candidate]) -> tuple[list[Candidate], str, str]:
    """(the candidates the name matches, the name as matched, the rest of the text: the user's answers)."""
    words = text.split()
    query: list[str] = []
    matched: list[Candidate] = []
    used = 0
    for index, word in enumerate(words):
        significant = [t for t in _tokens(word) if t not in STOPWORDS]
        if not significant:
            if query or index == used:  # a stopword before or inside the name belongs to it
                used = index + 1
            continue
        narrowed = _matching(candidates, query + significant)
        if not narrowed:
            break
        query, matched, used = query + significant, narrowed, index + 1
    if not query:
        return [], " ".join(t for t in _tokens(text) if t not in STOPWORDS)[:80] or text[:80], text
    return matched, " ".join(query), " ".join(words[used:])


def _listing(candidates: list[Candidate]) -> str:
    shown = ", ".join(c.location for c in candidates[:_LISTED])
    return shown + (f" ... and {len(candidates) - _LISTED} more" if len(candidates) > _LISTED else "")


def resolve_name(text: str, files: list[str]) -> tuple[str, str]:
    """(the one model the name means: a file path or a models:/ URI, the rest of the text); a StageError
    listing the candidates when several match, or what exists when none does."""
    from_registry, searched = registry_candidates()
    candidates = file_candidates(files) + from_registry
    matched, name, rest = match_name(text, candidates)
    if len(matched) == 1:
        location = matched[0].location
        print(f"request: {text.strip()!r} names no file; the name {name!r} matches one model, {location}: using it"
              + (f"; typed after it (answers to use, do not ask again): {rest}" if rest else ""),
              file=sys.stderr, flush=True)
        return location, rest
    if matched:
        raise StageError(f"the name {name!r} matches {len(matched)} models: {_listing(matched)}; ask the user which one "
                         "and run again with its path or models:/NAME/VERSION URI")
    files_said = f"model files here: {_listing(file_candidates(files))}" if files else "no model files under this directory"
    raise StageError(f"no model file or registered model matches the name {name!r} ({text.strip()[:80]!r} is not a "
                     f"file either); {files_said}; {searched}")
