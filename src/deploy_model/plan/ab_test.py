"""The A/B test of an `ab` plan: answers.yaml `ab_test: {...}` and the design deployment.yaml records."""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

RATE_METRICS = ("accuracy",)  # proportions judged against labels; a business rate is `business:<name>`
MEAN_METRICS = ("error", "latency")  # means: their standard deviation sizes the sample
BUSINESS = re.compile(r"^business:[a-z][a-z0-9_]{0,62}$")
HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
ARM_HEADER = "X-Experiment-Arm"  # `always`: arm B (the candidate), `never`: arm A (stable)


class AbTest(BaseModel):
    """What the user answers for an A/B test (rollout: ab)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field("accuracy", description="accuracy | error | latency | business:<rate name> (a rate the "
                        "user labels, e.g. business:conversion)")
    mde: float | None = Field(None, description="minimum detectable effect, absolute in the metric's units "
                              "(0.02 = two points of accuracy; latency in ms)")
    baseline: float | None = Field(None, gt=0, lt=1, description="the stable version's rate (accuracy, business:...)")
    stdev: float | None = Field(None, gt=0, description="the metric's standard deviation (error, latency in ms)")
    split: int = Field(50, ge=1, le=99, description="the candidate's (arm B's) percent of traffic, fixed for the experiment")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="false-positive rate of the verdict")
    power: float = Field(0.8, gt=0.5, lt=1, description="chance of detecting an effect of the MDE")
    traffic_rps: float | None = Field(None, gt=0, description="expected requests/s over both arms; default: requests_per_second")
    labelled_fraction: float = Field(1.0, gt=0, le=1, description="share of logged requests that get a label")
    sticky_header: str | None = Field(None, description="a caller key header (e.g. X-User-Id): its callers always see "
                                      "the same arm, where the mechanism can carry it")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in RATE_METRICS + MEAN_METRICS and not BUSINESS.match(value):
            raise ValueError(f"ab_test.metric {value!r}: expected accuracy, error, latency or business:<name> "
                             "(lowercase letters, digits, '_')")
        return value

    @field_validator("sticky_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not HEADER.match(value):
            raise ValueError(f"ab_test.sticky_header {value!r} is not an HTTP header name such as X-User-Id")
        return value

    def is_rate(self) -> bool:
        return self.metric not in MEAN_METRICS


class ExperimentSpec(BaseModel):
    """The experiment's design as planned: arms, split, metric, sample size and duration."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str
    split: int  # percent of traffic to arm B (the candidate)
    mde: float
    baseline: float | None = None
    stdev: float | None = None
    alpha: float
    power: float
    traffic_rps: float
    labelled_fraction: float  # of all requests: payload sampling x the share labelled
    n_a: int
    n_b: int
    duration_hours: float
    arm_header: str = ARM_HEADER
    sticky_header: str | None = None
    stickiness: str  # how (or whether) a caller keeps its arm with this mechanism


def arm_for(key: str, split: int) -> str:
    """The arm a caller key maps to (what a client or edge sends as ARM_HEADER): B for `split`% of keys."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return "B" if int(digest[:8], 16) % 100 < split else "A"
