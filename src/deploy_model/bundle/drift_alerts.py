"""Alert on sustained prediction drift against the training data, and its promtool tests."""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.alert_parts import fired, rule, selector, series, unit_case, who
from deploy_model.plan.spec import DeploymentSpec

SUSTAINED = "30m"  # drift is a trend, not a spike: a burst of odd traffic must not page


def drift_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """ModelPredictionDriftHigh when the image ships a drift reference (model_prediction_drift exists only then)."""
    if not spec.monitoring.drift_reference:
        return []
    act, name = spec.monitoring.drift_psi_act, who(spec)
    return [rule(
        "ModelPredictionDriftHigh",
        f"max by (namespace, app) (model_prediction_drift{selector(spec)}) > {act:g}",
        SUSTAINED, "warning",
        f"{name}: predictions drifted from the training data (PSI above {act:g})",
        f"The distribution of {name}'s predictions stayed {SUSTAINED} away from the one it had on its "
        f"training data (population stability index above {act:g}; the dashboard shows it per bin). "
        "Check input_feature_drift for the features that moved, and the labels for a drop in quality.",
    )]


def drift_tests(spec: DeploymentSpec, psi_shifted: float | None = None, psi_steady: float | None = None) -> list[dict[str, Any]]:
    """A shifted stream (PSI twice the threshold) fires after the `for:` duration; a steady one
    (half of it) does not. The tests in tests/drift feed promtool the PSIs a real server measured."""
    rules = drift_rules(spec)
    if not rules:
        return []
    alert, act = rules[0], spec.monitoring.drift_psi_act
    labels = {"namespace": spec.kubernetes.namespace, "app": spec.name}
    pod = {**labels, "pod": f"{spec.name}-0"}

    def case(psi: float, fires: bool) -> dict[str, Any]:
        return unit_case([series("model_prediction_drift", pod, f"{psi:g}x50")],
                         [("40m", alert["alert"], [fired(alert, labels)] if fires else []),
                          # before the `for:` duration even a shifted stream has not fired yet
                          ("20m", alert["alert"], [])])

    shifted = psi_shifted if psi_shifted is not None else act * 2
    steady = psi_steady if psi_steady is not None else act / 2
    return [case(shifted, shifted > act), case(steady, steady > act)]
