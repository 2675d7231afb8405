"""Where plan's answers come from: flags > --set > answers file > defaults, --set values typed by the schema."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import yaml

from deploy_model.plan.spec import Answers

# plan's flags named otherwise than the answer they give; every other flag is spelled as its answer.
FLAG_ANSWER = {"rps": "requests_per_second"}


def flag_answer(param: str) -> str | None:
    """The answer key a plan option gives (by its parameter name), or None for an option that is no answer."""
    key = FLAG_ANSWER.get(param, param)
    return key if key in Answers.model_fields else None


def _is_text(key: str) -> bool:
    """Whether the answer's type is a string (a str-valued enum included), so a value stays as typed."""
    field = Answers.model_fields.get(key)
    if field is None:
        return False
    kinds = [a for a in typing.get_args(field.annotation) if a is not type(None)] \
        if typing.get_origin(field.annotation) in (typing.Union, types.UnionType) else [field.annotation]
    return all(isinstance(k, type) and (issubclass(k, str) or issubclass(k, enum.Enum)) for k in kinds)


def set_value(key: str, raw: str) -> Any:
    """One --set value: the text itself for a string answer (`1.34` stays "1.34"), else a YAML scalar.

    Empty: None, which leaves the answer to the file or the default.
    """
    if not raw.strip():
        return None
    if _is_text(key):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def overrides(sets: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """The answers given on the command line, flags (those the user typed) over --set; None values dropped."""
    return {k: v for k, v in {**sets, **flags}.items() if v is not None}
