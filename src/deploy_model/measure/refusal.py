"""A server's refusal as one readable line: its own message, without onnxruntime's source noise."""

from __future__ import annotations

import re

import httpx

# onnxruntime's messages carry its source path and a C++ signature before the part a user needs.
_ORT_NOISE = [re.compile(p) for p in (r"\[ONNXRuntimeError\] : \d+ : \w+ : ", r"/onnxruntime_src/\S+:\d+ ",
                                       r"onnxruntime::[\w:]+\([^)]*\)\s*", r"Non-zero status code returned while running ",
                                       r"Name:'[^']*' Status Message: ")]


def condense(reason: str) -> str:
    """A server/onnxruntime message without onnxruntime's source paths and signatures, on one line."""
    text = " ".join(reason.split())
    for pattern in _ORT_NOISE:
        text = pattern.sub("", text)
    return text.strip()


def server_reason(response: httpx.Response) -> str:
    """The server's own refusal message: the `error`/`detail` field of a JSON answer, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        text = next((str(body[k]) for k in ("error", "detail", "message") if body.get(k)), "")
    return condense(text or response.text or "(empty body)")[:400]
