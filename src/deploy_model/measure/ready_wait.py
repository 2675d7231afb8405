"""How long `serve` waits for the server's readiness: a bound derived from model-profile.json.

wait = 15 s (process start, imports) + 2 x load + warm-up budget + one run of the largest
warm-up batch, at least 60 s and at most 900 s. The figures are `model.startup_budget`'s (load
recorded or estimated from the model's size, the warm-up budget the server is given); a
--ready-timeout replaces the whole bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy_model.model.startup_budget import StartupFigures

START_S = 15.0
WAIT_FLOOR_S = 60.0
WAIT_CAP_S = 900.0
FORMULA = (
    f"{START_S:g} s + 2 x load + warm-up budget + one largest warm-up batch (from model-profile.json), "
    f"at least {WAIT_FLOOR_S:g} s and at most {WAIT_CAP_S:g} s"
)


@dataclass(frozen=True)
class ReadyWait:
    """The seconds to wait and the figures they came from (said when the wait runs out)."""

    seconds: float
    basis: str


def derived_wait(figures: StartupFigures) -> ReadyWait:
    raw = START_S + 2 * figures.load_s + figures.warmup_budget_s + figures.largest_batch_s
    seconds = round(min(WAIT_CAP_S, max(WAIT_FLOOR_S, raw)), 1)
    latency = (
        f"warm-up estimate {figures.warmup_estimate_s:.1f} s over batch sizes {_sizes(figures.warmup_sizes)}"
        if figures.warmup_estimate_s is not None
        else "no latency in the profile: the server's default warm-up budget"
    )
    bound = " (the floor)" if raw < WAIT_FLOOR_S else " (the cap)" if raw > WAIT_CAP_S else ""
    basis = (
        f"derived{bound}: {START_S:g} s + 2 x load {figures.load_s:.1f} s ({figures.load_source}) + "
        f"warm-up budget {figures.warmup_budget_s} s ({latency}) + largest batch "
        f"{figures.largest_batch_s:.1f} s = {raw:.1f} s"
    )
    return ReadyWait(seconds, basis)


def given_wait(seconds: float) -> ReadyWait:
    return ReadyWait(float(seconds), "--ready-timeout")


def _sizes(sizes: list[int]) -> str:
    return f"{sizes[0]}..{sizes[-1]}" if len(sizes) > 2 else ", ".join(map(str, sizes))
