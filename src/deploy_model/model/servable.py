"""Why the reference server cannot serve a model: onnxserve's own check, else the same rule here."""

from __future__ import annotations

from typing import Any

# The value types the reference server carries (V2 datatypes), for an onnxserve without its own check.
_SERVABLE_TENSORS = {
    f"tensor({t})" for t in ("float", "double", "float16", "int8", "int16", "int32", "int64", "uint8",
                             "uint16", "uint32", "uint64", "bool", "string")
}
_SERVABLE_OUTPUTS = {"seq(map(string,tensor(float)))", "seq(map(int64,tensor(float)))"}


def unservable(session: Any) -> list[str]:
    """Why the reference server cannot serve the model: onnxserve's own check when it has one, so
    inspect and the server never disagree; else the same rule here."""
    try:
        from onnxserve.model import unservable_reasons
    except ImportError:  # an onnxserve from before unservable_reasons
        reasons = [f"input {i.name!r} has type {i.type}, which a V2 request cannot carry"
                   for i in session.get_inputs() if i.type not in _SERVABLE_TENSORS]
        return reasons + [f"output {o.name!r} has type {o.type}, which the server cannot encode"
                          for o in session.get_outputs() if o.type not in _SERVABLE_TENSORS | _SERVABLE_OUTPUTS]
    return unservable_reasons(session)
