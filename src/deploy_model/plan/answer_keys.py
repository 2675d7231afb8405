"""`deploy-model answers`: the keys answers.yaml may hold, read from spec.Answers itself.

The agent writes answers.yaml; this is its reference (type, allowed values, bounds, default,
meaning), so the file's keys never drift from what `plan` accepts. `plan --help` shows flags,
which are spelled differently (`--rps` is `requests_per_second`).
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from deploy_model.plan.spec import Answers


def _type_name(annotation: Any) -> tuple[str, list[str] | None, bool]:
    """(type name, allowed values for enums, optional) of a field annotation."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        optional = type(None) in args
        annotation = next(a for a in args if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string", [member.value for member in annotation], optional
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))), None, optional


def _bounds(field: FieldInfo) -> str | None:
    parts = []
    for item in field.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts) or None


def _entry(name: str, field: FieldInfo) -> dict[str, Any]:
    kind, allowed, optional = _type_name(field.annotation)
    default = field.default.value if isinstance(field.default, enum.Enum) else field.default
    if default is PydanticUndefined:  # a nested group (default_factory): its keys follow, dotted
        default = None
    return {"key": name, "type": kind, "allowed": allowed, "range": _bounds(field), "default": default,
            "optional": optional, "meaning": field.description or ""}


def answer_keys() -> list[dict[str, Any]]:
    """Every key, a nested group's keys as `group.key` right after the group (ab_test.metric, ...)."""
    keys = []
    for name, field in Answers.model_fields.items():
        keys.append(_entry(name, field))
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            keys += [_entry(f"{name}.{sub}", subfield) for sub, subfield in nested.model_fields.items()]
    return keys


def run_answers(as_json: bool) -> dict[str, Any]:
    keys = answer_keys()
    if not as_json:
        lines = ["answers.yaml keys (key: type [allowed | range] = default -- meaning); unknown keys are refused:"]
        for k in keys:
            detail = " | ".join(k["allowed"]) if k["allowed"] else (k["range"] or "")
            default = "(derived)" if k["default"] is None else repr(k["default"])
            lines.append(f"  {k['key']}: {k['type']}{f' [{detail}]' if detail else ''} = {default}"
                         + (f" -- {k['meaning']}" if k["meaning"] else ""))
        print("\n".join(lines))
    return {"stage": "answers", "ok": True, "keys": keys}
