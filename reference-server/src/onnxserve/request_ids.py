"""Request ids: taken from the caller (V2 body ``id``, ``X-Request-Id``, gRPC ``x-request-id``)
or made up (uuid4), echoed in the response and written into the payload log."""

from __future__ import annotations

import uuid

from .codec import ApiError, shown

HEADER = "x-request-id"  # REST header and gRPC metadata key (gRPC keys are lower case)
MAX_CHARS = 256


def new_id() -> str:
    return str(uuid.uuid4())


def header_safe(value: str) -> bool:
    """Fits a response header / gRPC metadata value: 1..256 visible ASCII characters."""
    return 0 < len(value) <= MAX_CHARS and value.isascii() and value.isprintable()


def from_header(value: str | None) -> str | None:
    """The caller's ``X-Request-Id`` (None when absent); ApiError(400) when it cannot be echoed."""
    if value is None:
        return None
    value = value.strip()
    if not header_safe(value):
        raise ApiError(
            400,
            f"X-Request-Id {shown(value)} is not 1..{MAX_CHARS} visible ASCII characters; "
            "send such an id or none (the server then makes one up)",
        )
    return value


def choose(body_id: str | None, header_id: str | None) -> str:
    """The request's id: the V2 body's ``id`` (the protocol's own), else the header's, else new."""
    return body_id or header_id or new_id()
