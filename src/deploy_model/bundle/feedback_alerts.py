"""Alert on online accuracy falling, from the server's ground-truth feedback, and its promtool tests."""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.alert_parts import fired, rule, selector, series, unit_case, who
from deploy_model.plan.spec import DeploymentSpec

WINDOW = "1h"  # accuracy over the last hour of labelled rows
SUSTAINED = "15m"
MIN_ROWS = 20  # labelled rows in the window; fewer and one wrong answer would page


def feedback_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """ModelOnlineAccuracyLow: per track, correct / (correct + wrong) over the hour below
    monitoring.min_online_accuracy with at least MIN_ROWS labelled rows. The series exist only
    once feedback arrives (POST /v2/models/{name}/feedback), so a deployment without it never fires."""
    floor, name = spec.monitoring.min_online_accuracy, who(spec)
    by = "sum by (namespace, app, track)"
    scored_sel, correct_sel = selector(spec, 'outcome=~"correct|wrong"'), selector(spec, 'outcome="correct"')
    scored = f"{by} (increase(model_feedback_total{scored_sel}[{WINDOW}]))"
    correct = f"{by} (increase(model_feedback_total{correct_sel}[{WINDOW}]))"
    return [rule(
        "ModelOnlineAccuracyLow",
        f"({correct} / {scored} < {floor:g}) and {scored} >= {MIN_ROWS}",
        SUSTAINED, "warning",
        f"{name}: online accuracy of track {{{{ $labels.track }}}} below {floor:.0%}",
        f"Over the last {WINDOW}, the answers of {name} (track {{{{ $labels.track }}}}) that "
        f"ground-truth feedback scored were right less than {floor:.0%} of the time (at least "
        f"{MIN_ROWS} labelled rows). Compare the tracks on the dashboard's online accuracy panel; "
        "a canary's drop is a reason to roll it back, stable's to retrain.",
    )]


def feedback_tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """70% right fires after the window and `for:`; 95% right does not; 70% on too few rows does not."""
    alert = feedback_rules(spec)[0]
    labels = {"namespace": spec.kubernetes.namespace, "app": spec.name, "track": "canary"}
    pod = {**labels, "pod": f"{spec.name}-0"}
    annotations = {k: v.replace("{{ $labels.track }}", "canary") for k, v in alert["annotations"].items()}

    def case(right_per_min: float, wrong_per_min: float, fires: bool) -> dict[str, Any]:
        counts = [series("model_feedback_total", {**pod, "outcome": o}, f"0+{n:g}x120")
                  for o, n in (("correct", right_per_min), ("wrong", wrong_per_min))]
        return unit_case(counts, [("90m", alert["alert"], [fired(alert, labels, annotations)] if fires else [])])

    floor = spec.monitoring.min_online_accuracy
    low, high = max(floor - 0.2, 0.0), min(floor + (1 - floor) / 2, 1.0)
    return [case(10 * low, 10 * (1 - low), True), case(10 * high, 10 * (1 - high), False),
            case(0.1 * low, 0.1 * (1 - low), False)]
