"""Value formatting for DEPLOYMENT.md: Markdown-safe table cells, numbers, one-line text."""

from __future__ import annotations

import math
import re
from typing import Any


def md(text: Any) -> str:
    """A value safe inside a Markdown table cell. A Python `None` quoted from a stage's message reads
    'none': the report refuses text that looks like an unfilled value."""
    return re.sub(r"\bNone\b", "none", str(text).replace("|", "\\|").replace("\n", " "))


def num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def one_line(text: Any, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def code(text: Any) -> str:
    """An inline code span that shows `text` as is, backticks included: its fence is longer than any
    backtick run inside, and a space pads a text that starts or ends with one (CommonMark strips it)."""
    text = str(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
