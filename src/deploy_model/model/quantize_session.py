"""onnxruntime sessions for quantize: CPU sessions, quiet logging, onnxruntime errors as one line."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError

# onnxruntime's messages carry its source location and the failed C++ condition before the reason.
_ORT_NOISE = re.compile(r"\S*onnxruntime_src/\S+:\d+ .*? was false\.\s*|\S*onnxruntime_src/\S+:\d+ \S+\(.*?\)\s*")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """onnxruntime's message without its source locations and error-code prefix, on one line."""
    text = _ORT_NOISE.sub("", " ".join(str(exc).split()))
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)[:limit] or type(exc).__name__


@contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Keep stderr to our own messages: onnxruntime's C++ warnings and the quantizer's logging."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice through the root logger
    ort.set_default_logger_severity(3)  # sessions the quantizer opens itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default (warning)
        root.setLevel(level)


def open_session(path: Path, threads: int = 0) -> Any:
    """A CPU session; onnxruntime's own exception when it cannot load the model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Fatal only: a failed run reaches the user as our one-line message, not as onnxruntime's log too.
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_session(path: Path, threads: int = 0) -> Any:
    """A CPU session, or a StageError naming why onnxruntime cannot load the model."""
    try:
        return open_session(path, threads)
    except Exception as exc:  # onnxruntime has its own exception types
        raise StageError(f"onnxruntime cannot load {path}: {one_line(exc)}") from None
