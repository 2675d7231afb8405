"""Latency percentiles a load-test level may report: each one needs enough samples behind it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# The percentiles a level reports and the fewest answered requests each needs: at least one sample
# beyond the percentile (1 / (1 - q)), so a p95 of 19 samples is never its slowest one in disguise.
PERCENTILES = (50, 95, 99)


def samples_needed(q: int) -> int:
    """Fewest samples a q-th percentile needs (p50: 2, p95: 20, p99: 100)."""
    return math.ceil(100 / (100 - q) - 1e-9)


def too_few_note(samples: int, q: int) -> str:
    return f"{samples} samples: too few for a p{q}"


def percentile_fields(samples: int, value: Callable[[int], float | None]) -> dict[str, Any]:
    """`samples`, and pNN_ms for each percentile, or None with a pNN_note when the samples are too few."""
    fields: dict[str, Any] = {"samples": samples}
    for q in PERCENTILES:
        if samples >= samples_needed(q):
            fields[f"p{q}_ms"] = value(q)
        else:
            fields[f"p{q}_ms"] = None
            fields[f"p{q}_note"] = too_few_note(samples, q)
    return fields


def shown(level: dict[str, Any], q: int, unit: str = " ms") -> str:
    """A percentile for a person: its value, or why there is none (never a p95 from too few samples)."""
    value = level.get(f"p{q}_ms")
    if value is not None:
        return f"{value}{unit}"
    note = level.get(f"p{q}_note")
    return f"n/a ({note})" if note else "n/a"
