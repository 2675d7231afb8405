"""Alert rules on the server's payload log (payload_log_dropped_total), and their promtool tests."""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.alert_parts import fired, rule, selector, series, unit_case, who
from deploy_model.plan.spec import DeploymentSpec

# Share of sampled records that may be lost before the log is no longer a faithful sample.
MAX_DROPPED_RATIO = 0.01


def payload_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """ModelPayloadLogDropping when the payload log is on; no rules when it is off."""
    if not spec.payload_logging.enabled:
        return []
    sel, name = selector(spec), who(spec)
    by = "namespace, app, track"
    return [rule(
        "ModelPayloadLogDropping",
        f"sum by ({by}) (rate(payload_log_dropped_total{sel}[5m]))\n"
        f"  / clamp_min(sum by ({by}) (rate(payload_log_sampled_total{sel}[5m])), 1e-9)\n"
        f"  > {MAX_DROPPED_RATIO:g}",
        "10m", "warning",
        f"{name}: the payload log drops records",
        f"More than {MAX_DROPPED_RATIO:.0%} of the sampled payload records of {name} were "
        "dropped for 10 minutes (payload_log_dropped_total by reason: queue_full = the sink "
        "is slower than the traffic, sink_error = it fails or the volume is full). Requests "
        "are still served; the log is no longer complete. Fix the sink or lower the sampling.",
    )]


def payload_tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """The rule fires on a sink losing 10% of records and stays quiet on one losing none."""
    rules = payload_rules(spec)
    if not rules:
        return []
    alert = rules[0]
    labels = {"namespace": spec.kubernetes.namespace, "app": spec.name, "track": "stable"}
    pod = {**labels, "pod": f"{spec.name}-0"}
    sampled = series("payload_log_sampled_total", pod, "0+600x40")

    def case(dropped_per_min: int, fires: bool) -> dict[str, Any]:
        dropped = series("payload_log_dropped_total", {**pod, "reason": "queue_full"}, f"0+{dropped_per_min}x40")
        return unit_case([sampled, dropped], [("25m", alert["alert"], [fired(alert, labels)] if fires else [])])

    return [case(60, True), case(0, False)]
