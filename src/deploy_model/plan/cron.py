"""Cron schedules checked field by field, as Kubernetes CronJob reads them (five fields).

A schedule reaches YAML, a Prefect flow and a printed shell command, so only cron's own
characters pass: digits, names of months and weekdays, `* , - / ?`, single spaces between fields.
A newline, `$(`, quotes or a sixth field are refused before any of them is rendered.
"""

from __future__ import annotations

import re

from deploy_model.common.errors import short

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, lowest, highest, names starting at `lowest`)
FIELDS = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),  # 0 and 7 are both Sunday
]
ALLOWED = re.compile(r"^[0-9A-Za-z*,/?\- ]+$")
EXAMPLE = "'0 2 * * *' (02:00 every day)"


def _value(token: str, field: int) -> int:
    name, low, high, names = FIELDS[field]
    upper = token.upper()
    if names and upper in names:
        return low + names.index(upper)
    if not token.isdigit():
        raise ValueError(f"{name} {short(token)} is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    number = int(token)
    if not low <= number <= high:
        raise ValueError(f"{name} {number} is out of range {low}-{high}")
    return number


def _item(item: str, field: int) -> None:
    name = FIELDS[field][0]
    base, slash, step = item.partition("/")
    if slash:
        if not step.isdigit() or int(step) < 1:
            raise ValueError(f"{name} step {short(step)} must be a whole number of at least 1")
    if base in ("*", "?"):
        if base == "?" and field not in (2, 4):
            raise ValueError(f"'?' is only allowed in day of month or day of week, not {name}")
        return
    first, dash, last = base.partition("-")
    start = _value(first, field)
    if dash:
        end = _value(last, field)
        if end < start:
            raise ValueError(f"{name} range {short(base)} runs backwards")


def validate(value: str) -> str:
    """The schedule, stripped, when valid; ValueError naming the faulty field otherwise."""
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not text:
        raise ValueError(f"batch_schedule {short(value)} is empty; expected five cron fields such as {EXAMPLE}")
    if text.lower() in MACROS:
        return text.lower()
    if text.startswith("@"):
        raise ValueError(
            f"batch_schedule {short(value)} is not a schedule a CronJob runs; expected one of "
            f"{', '.join(MACROS)} or five fields such as {EXAMPLE}"
        )
    if not ALLOWED.match(text):
        bad = sorted({c for c in text if not ALLOWED.match(c)})
        raise ValueError(
            f"batch_schedule {short(value)} holds characters cron does not use ({short(''.join(bad))}); "
            f"expected five fields of digits, names and * , - / ? such as {EXAMPLE}"
        )
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"batch_schedule {short(value)} has {len(fields)} fields; expected five "
            f"(minute hour day-of-month month day-of-week) such as {EXAMPLE}, or one of {', '.join(MACROS)}"
        )
    for index, field in enumerate(fields):
        for item in field.split(","):
            if not item:
                raise ValueError(f"batch_schedule {short(value)}: empty item in {FIELDS[index][0]} {short(field)}")
            try:
                _item(item, index)
            except ValueError as exc:
                raise ValueError(f"batch_schedule {short(value)}: {exc}") from None
    return " ".join(fields)
