"""The smoke test's shared state and HTTP plumbing: timed checks, GET/POST that fail a check."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.measure.loading import LOADING_ADVICE, still_loading
from deploy_model.measure.refusal import server_reason
from deploy_model.model.samples import describe_rejection, model_feed


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    protocol: str = "rest"  # what the check called: "rest" or "grpc"
    encoding: str = "json"  # its bodies: "json", "binary" (V2 binary tensors) or "protobuf" (gRPC)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ok": self.ok, "message": self.message, "ms": round(self.seconds * 1000, 2),
                               "protocol": self.protocol, "encoding": self.encoding}
        if self.details:
            out["details"] = self.details
        if self.warnings:
            out["warnings"] = self.warnings
        return out


class Failed(Exception):
    """One check did not pass; the message says what was expected and what came back."""


# What one check returns: its message, or its message and the details recorded in smoke.json.
CheckResult = tuple[str, dict[str, Any]] | str


class SmokeSession:
    """One run of checks against one server: the client, the recorded checks, and what later checks need."""

    def __init__(self, url: str, profile: dict[str, Any], model_name: str, timeout_s: float = 10.0,
                 directory: Path | None = None, grpc_target: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.grpc_target = grpc_target  # host:port of a gRPC plan's server: its checks go there
        self.timeout_s = timeout_s
        self.grpc_before: float | None = None  # the server's gRPC request counter before the checks
        self.rpc: Any = None  # the gRPC stub, opened by the first gRPC check
        self.closers: list[Callable[[], None]] = []
        self.profile = profile
        self.directory = directory
        self.model_name = model_name
        self.client = httpx.Client(timeout=timeout_s)
        self.checks: list[Check] = []
        self.served: dict[str, dict[str, Any]] = {}  # output name -> the server's metadata entry
        self._warnings: list[str] = []
        self.sources: set[str] = set()
        self.answered = False  # some inference answered 200

    def run_check(self, name: str, fn: Callable[[SmokeSession], CheckResult], protocol: str = "rest",
                  encoding: str = "json") -> bool:
        started = time.perf_counter()
        self._warnings = []
        try:
            result = fn(self)
            message, details = (result, {}) if isinstance(result, str) else result
            ok = True
        except Failed as exc:
            message, details, ok = str(exc), {}, False
        except httpx.HTTPError as exc:
            message, details, ok = f"no HTTP answer: {type(exc).__name__}: {exc}", {}, False
        except ValueError as exc:  # a body that is not the JSON it should be
            message, details, ok = f"unreadable answer: {exc}", {}, False
        except StageError as exc:  # a stored sample that no longer fits the model
            message, details, ok = exc.message, {}, False
        if ok and self._warnings:
            message += f" (warning: {'; '.join(self._warnings)})"
        self.checks.append(Check(name, ok, message, time.perf_counter() - started, details, list(self._warnings),
                                 protocol, encoding))
        return ok

    def warn(self, text: str) -> None:
        self._warnings.append(text)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.client.close()

    def get(self, path: str, want: int = 200) -> httpx.Response:
        response = self.client.get(self.url + path)
        if response.status_code != want:
            raise Failed(f"GET {path}: expected HTTP {want}, got {response.status_code}: {server_reason(response)}")
        return response

    def feed(self, batch: int, seed: int) -> tuple[dict[str, np.ndarray], str]:
        arrays, source = model_feed(self.profile, self.directory, batch=batch, seed=seed)
        self.sources.add(source)
        return arrays, source

    def post_inputs(self, path: str, body: dict[str, Any], arrays: Mapping[str, np.ndarray], source: str) -> httpx.Response:
        """POST model inputs; a refusal names the server's reason (and how to pass a sample when synthetic)."""
        response = self.client.post(self.url + path, json=body)
        if response.status_code != 200:
            reason = server_reason(response)
            if still_loading(response.status_code):  # not a refusal of the inputs: --sample would not help
                raise Failed(f"POST {path} answered HTTP {response.status_code}: {reason}; {LOADING_ADVICE}")
            if source == "synthetic":  # one line: the inputs tried, the server's reason, how to pass a sample
                raise Failed(f"POST {path} answered HTTP {response.status_code}: {describe_rejection(arrays, reason)}")
            raise Failed(f"POST {path} with the sample answered HTTP {response.status_code}: {reason}")
        self.answered = True
        return response
