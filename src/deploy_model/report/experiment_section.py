"""The report's Experiment section of an `ab` plan: the design, how labels are attached, the commands."""

from __future__ import annotations

from typing import Any

from deploy_model.cluster.rollout_experiment import analyze_command
from deploy_model.plan import releases


def experiment_section(spec: Any, directory: str) -> dict[str, Any] | None:
    """Facts of the section (None when the plan is not an A/B test)."""
    e = spec.rollout.experiment
    if e is None:
        return None
    stable = spec.stable.version if spec.stable else None
    measure = (f"baseline rate {e.baseline:g}" if e.baseline is not None else f"standard deviation {e.stdev:g}")
    rows = [
        ("arms", f"A: {stable or 'the stable version (next release)'} (track {releases.live_track(spec)}); "
                 f"B: {spec.model.version} (track canary)"),
        ("split", f"{100 - e.split}% A / {e.split}% B, fixed for the experiment's length"),
        ("metric", f"{e.metric} ({measure})"),
        ("minimum detectable effect", f"{e.mde:g} (absolute)"),
        ("alpha / power", f"{e.alpha:g} / {e.power:g}"),
        ("requests per arm", f"A {e.n_a}, B {e.n_b} ({e.labelled_fraction:.0%} of requests logged"
                             + (" and labelled)" if e.metric != "latency" else ")")),
        ("duration", f"about {e.duration_hours:g} h ({e.duration_hours / 24:.1f} days) at {e.traffic_rps:g} req/s: "
                     "the least it runs (the sequential test needs somewhat more for the same power)"),
        ("sticky callers", e.stickiness),
    ]
    business = e.metric.startswith("business:")
    return {
        "rows": rows,
        "first_release": stable is None,
        "business": business,
        "status": analyze_command(spec, directory, "status"),
        "analyze": analyze_command(spec, directory),
        "sampling": spec.payload_logging.sampling,
    }
