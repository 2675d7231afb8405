"""An A/B test under `deploy-model rollout`: its split is held, so advance refuses and status shows the design."""

from __future__ import annotations

import shlex
from typing import Any


def analyze_command(spec: Any, directory: str, verb: str = "analyze") -> str:
    """The `experiment status|analyze` line of an ab plan: arms named by version (every layout logs them)."""
    e = spec.rollout.experiment
    metric = e.metric if e.metric in ("accuracy", "error", "latency") else "accuracy"
    args = ["deploy-model", "experiment", verb, "--payloads", "PAYLOAD_LOGS"]
    if e.metric != "latency":
        args += ["--labels", "LABELS"]
    args += ["--metric", metric, "--mde", f"{e.mde:g}", "--alpha", f"{e.alpha:g}",
             "--control", spec.stable.version if spec.stable else "stable", "--treatment", spec.model.version,
             "--out", directory]
    return shlex.join(args).replace("PAYLOAD_LOGS", "$PAYLOAD_LOGS").replace("LABELS", "$LABELS")


def design(spec: Any, directory: str) -> dict[str, Any] | None:
    """What `rollout status` shows of an ab plan's experiment (None for any other plan)."""
    e = spec.rollout.experiment
    if e is None:
        return None
    return {"metric": e.metric, "split": f"{100 - e.split}/{e.split} (A stable / B candidate)", "mde": e.mde,
            "alpha": e.alpha, "power": e.power, "n_per_arm": {"A": e.n_a, "B": e.n_b},
            "duration_hours": e.duration_hours, "stickiness": e.stickiness,
            "n_so_far": f"read from the payload log: {analyze_command(spec, directory, 'status')}",
            "at_the_end": f"{analyze_command(spec, directory)}; then `deploy-model rollout promote` (B better) or "
                          "`deploy-model rollout rollback` (A stays)"}


def advance_refusal(spec: Any, directory: str) -> str:
    e = spec.rollout.experiment
    return (f"{spec.name} is an A/B test holding {e.split}% on {spec.model.version} for its planned length "
            f"(about {e.duration_hours:g} h, {e.n_a} + {e.n_b} requests): rollout advance never moves its weight; "
            f"judge it with `{analyze_command(spec, directory)}`, then `deploy-model rollout promote` or "
            "`deploy-model rollout rollback`")
