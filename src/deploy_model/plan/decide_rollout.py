"""Decide the rollout strategy and its settings: canary steps, an A/B test's fixed split, shadow mirroring, blue-green or direct."""

from __future__ import annotations

from deploy_model.common.errors import StageError
from deploy_model.plan.decide_experiment import decide_ab
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import (
    Answers,
    CanaryMechanism,
    CanarySpec,
    Rollout,
    RolloutSpec,
    ServingPattern,
    ShadowSpec,
)

# Patterns with no live traffic to split, mirror or switch: only a direct rollout makes sense there.
NO_TRAFFIC_SPLIT = {
    ServingPattern.batch: "a scheduled job scores files; there is no live traffic to split, mirror or switch "
                          "(a new version takes effect with the next run)",
    ServingPattern.edge: "the model ships inside the device build; there is no served traffic to split, mirror or switch",
    ServingPattern.event_driven: "workers take requests from a queue; the bundle has no route or Service to split, "
                                 "mirror or switch (a new version takes effect as its workers replace the old ones)",
}


def decide_rollout(log: DecisionLog, answers: Answers, pattern: ServingPattern) -> RolloutSpec:
    a = answers
    strategy = a.rollout
    canary = shadow = experiment = None
    if pattern in NO_TRAFFIC_SPLIT and strategy != Rollout.direct:
        why = NO_TRAFFIC_SPLIT[pattern]
        if "rollout" in a.model_fields_set:  # answered: refuse; defaulted: the only rollout that fits
            raise StageError(f"rollout {strategy.value!r} makes no sense for the {pattern.value} pattern: {why}",
                             [f"answers: rollout: got {strategy.value!r}; expected 'direct' for {pattern.value} plans"])
        log.decide("rollout", Rollout.direct, f"{pattern.value} pattern -> direct: {why}")
        return RolloutSpec(strategy=Rollout.direct)
    if strategy == Rollout.canary:
        steps = sorted({a.canary_weight, 50, 100}) if a.canary_weight < 100 else [100]
        router = a.argo_traffic_router if a.canary_mechanism == CanaryMechanism.argo_rollouts else None
        canary = CanarySpec(mechanism=a.canary_mechanism, steps=steps, pause_minutes=60, traffic_router=router)
        rule = (
            f"canary via {a.canary_mechanism.value}: steps {steps}% with 60 min watches; roll back when the "
            "error rate passes 2x or p95 latency 1.5x the stable version"
        )
    elif strategy == Rollout.ab:
        canary, experiment = decide_ab(log, a)
        rule = (f"A/B test via {a.serverless_mechanism.value if a.target.value == 'serverless' else a.canary_mechanism.value}: "
                f"the candidate (arm B) holds {experiment.split}% of traffic until `experiment analyze` decides; "
                f"rollout advance never moves it; {experiment.stickiness}")
    elif strategy == Rollout.shadow:
        shadow = ShadowSpec(mechanism=a.shadow_mechanism, model_path=a.shadow_model, sample_rate=a.shadow_sample_rate)
        rule = (
            f"shadow via {a.shadow_mechanism.value} on {a.shadow_sample_rate:.0%} of requests; "
            "promote when agreement stays above 85%"
        )
    elif strategy == Rollout.blue_green:
        rule = "blue-green: the new version runs beside the old one; the Service selector switches at once"
    else:
        rule = "direct: rolling update of the Deployment (acceptable for a first release with no traffic yet)"
    log.decide("rollout", strategy, rule)
    return RolloutSpec(strategy=strategy, canary=canary, shadow=shadow, experiment=experiment)
