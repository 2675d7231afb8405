"""The load test's REST target: the infer endpoint and one pre-encoded body (JSON or binary tensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from deploy_model.measure.binary_body import encoded_body, rest_encoding
from deploy_model.model.samples import model_feed


class Target:
    """The infer endpoint and a pre-encoded request body (the client should not be the bottleneck)."""

    protocol = "rest"

    def __init__(self, url: str, model_name: str, profile: dict[str, Any], batch: int, timeout_s: float,
                 directory: Path | None = None, encoding: str | None = None) -> None:
        self.endpoint = f"{url.rstrip('/')}/v2/models/{model_name}/infer"
        self.arrays, self.source = model_feed(profile, directory, batch=batch, seed=11)
        # None: as clients send these inputs (binary tensors above binary_body.BINARY_ABOVE_BYTES).
        self.encoding = encoding or rest_encoding(self.arrays)
        self.body, self.headers = encoded_body(self.arrays, self.encoding)
        self.timeout = httpx.Timeout(timeout_s)

    def with_encoding(self, encoding: str) -> Target:
        """The same endpoint and inputs, in another body encoding."""
        other = object.__new__(Target)
        other.__dict__.update(self.__dict__)
        other.encoding = encoding
        other.body, other.headers = encoded_body(self.arrays, encoding)
        return other

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def refusal(self) -> str:
        """Why the server refuses this body, in its own words (one request, read in full)."""
        try:
            with self.client() as client:
                response = client.post(self.endpoint, content=self.body, headers=self.headers)
        except httpx.HTTPError as exc:
            return f"no HTTP answer: {type(exc).__name__}"
        from deploy_model.measure.refusal import server_reason

        return f"HTTP {response.status_code}: {server_reason(response)}"

    def send(self, client: httpx.Client) -> str:
        try:
            response = client.post(self.endpoint, content=self.body, headers=self.headers)
            return str(response.status_code)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__
