"""What an HTTP 503 from the server means to a stage: it was still loading the model, not refusing inputs."""

from __future__ import annotations

# The reference server answers 503 ("model is loading; retry shortly") until the model is ready.
LOADING_STATUS = 503
LOADING_ADVICE = (
    "the server was still loading the model (HTTP 503: not ready yet), so the inputs were never tried: "
    "wait until GET /v2/health/ready answers 200 before sending requests, or raise the start-up budget "
    "(deploy-model serve --ready-timeout SECONDS)"
)


def still_loading(status: int | str) -> bool:
    """True for the status a server gives while it loads the model."""
    return str(status) == str(LOADING_STATUS)
