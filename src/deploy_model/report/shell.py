"""Shell lines printed for a person or an agent to paste: built from their words, every value quoted."""

from __future__ import annotations

import shlex


def sh(*words: object) -> str:
    """One command from its words (shlex.join): a path holding spaces, `$(...)`, backticks or `;` stays
    one inert argument; plain words (names, flags, ordinary paths) print as they are."""
    return shlex.join(str(word) for word in words)


def q(word: object) -> str:
    """One value quoted, for a line that mixes fixed shell syntax (`|`, `&&`, `&`, `>`) with values."""
    return shlex.quote(str(word))
