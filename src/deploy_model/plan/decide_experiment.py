"""Decide an `ab` rollout: the fixed split's mechanism, stickiness, sample size, duration and payload log."""

from __future__ import annotations

from deploy_model.common.errors import StageError
from deploy_model.experiment.sample_size import estimate
from deploy_model.plan.ab_test import ARM_HEADER, ExperimentSpec
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.payload_logging import PayloadLogging
from deploy_model.plan.spec import Answers, CanaryMechanism, CanarySpec, Rollout, Target

_PINNED = (f"{ARM_HEADER}: always pins arm B and never pins arm A; a caller keeps its arm across requests when it "
           "(or an edge in front) maps its {key} to an arm (B when int(sha256(key)[:8], 16) % 100 < {split}) and "
           "sends that header; requests without it are split by weight, each on its own")
# Why a mechanism cannot keep a caller on one arm (a sticky_header answer is refused there).
NOT_STICKY = {
    "argo-rollouts": "Argo Rollouts holds the split with setWeight on its router and has no per-caller routing in "
                     "this bundle",
    "knative": "Knative splits by revision percentages; its tags give each arm its own URL "
               "(stable-<name>..., candidate-<name>...) but no header keeps a caller on one arm",
    "kserve": "KServe's canaryTrafficPercent splits each request at random; it has no sticky routing",
}
WHY_HASH = {
    "gateway-api": "Gateway API v1 has no hash-based split (sessionPersistence is in the experimental channel only, "
                   "not in the v1 CRDs the bundle is validated against)",
    "ingress-nginx": "ingress-nginx picks the canary per request by weight (upstream-hash-by balances pods within one "
                     "Service, not between the canary and stable Ingresses)",
}


def mechanism_of(a: Answers) -> str:
    if a.target == Target.serverless:
        return a.serverless_mechanism.value
    return a.canary_mechanism.value


def decide_ab(log: DecisionLog, a: Answers) -> tuple[CanarySpec, ExperimentSpec]:
    """The canary objects that carry the fixed split, and the experiment's design (refusals with the reason)."""
    t, mech = a.ab_test, mechanism_of(a)
    if a.target not in (Target.kubernetes, Target.serverless):
        raise StageError(f"rollout ab on target {a.target.value}: nothing there splits traffic between two versions "
                         "at a fixed ratio", ["answers: target: expected kubernetes or serverless for an A/B test"])
    if "shadow_mechanism" in a.model_fields_set:
        raise StageError("rollout ab with a shadow_mechanism: a shadow's answers are discarded, so it cannot be an arm "
                         "of an A/B test (callers must be served by both versions)",
                         ["answers: drop shadow_mechanism and pick the split with canary_mechanism "
                          "(gateway-api, ingress-nginx, argo-rollouts) or serverless_mechanism"])
    if t.sticky_header and mech in NOT_STICKY:
        raise StageError(f"ab_test.sticky_header {t.sticky_header}: {NOT_STICKY[mech]}",
                         [f"answers: drop sticky_header, or split with canary_mechanism gateway-api or ingress-nginx "
                          f"(a caller pins its arm with the {ARM_HEADER} header)"])
    problems = []
    if t.mde is None:
        problems.append("ab_test.mde: the minimum detectable effect is missing (expected a number in the metric's units)")
    if t.is_rate() and t.baseline is None:
        problems.append(f"ab_test.baseline: metric {t.metric} is a rate; expected the stable version's rate in (0, 1)")
    if not t.is_rate() and t.stdev is None:
        problems.append(f"ab_test.stdev: metric {t.metric} is a mean; expected its standard deviation (> 0)")
    if (t.is_rate() and t.stdev is not None) or (not t.is_rate() and t.baseline is not None):
        problems.append(f"ab_test: metric {t.metric} takes {'baseline' if t.is_rate() else 'stdev'}, not "
                        f"{'stdev' if t.is_rate() else 'baseline'}")
    if problems:
        raise StageError("rollout ab cannot size the experiment", problems)
    sampling = payload_logging(a).sampling
    labelled = sampling * (1.0 if t.metric == "latency" else t.labelled_fraction)
    traffic = t.traffic_rps or a.requests_per_second
    try:
        size = estimate(traffic_rps=traffic, mde=float(t.mde), alpha=t.alpha, power=t.power,  # type: ignore[arg-type]
                        split=t.split / 100, baseline=t.baseline, stdev=t.stdev, labelled_fraction=labelled)
    except ValueError as exc:
        raise StageError(f"rollout ab cannot size the experiment: {exc}") from None
    if t.sticky_header:
        stickiness = f"{_PINNED.format(key=t.sticky_header, split=t.split)}; {WHY_HASH[mech]}"
    elif mech in NOT_STICKY:
        stickiness = f"not sticky: {NOT_STICKY[mech]}; each request is split on its own"
    else:
        stickiness = f"{_PINNED.format(key='caller key', split=t.split)}; {WHY_HASH[mech]}"
    hours = round(size.duration_seconds / 3600, 2)
    design = ExperimentSpec(metric=t.metric, split=t.split, mde=float(t.mde), baseline=t.baseline,  # type: ignore[arg-type]
                            stdev=t.stdev, alpha=t.alpha, power=t.power, traffic_rps=traffic, labelled_fraction=labelled,
                            n_a=size.n_a, n_b=size.n_b, duration_hours=hours, sticky_header=t.sticky_header,
                            stickiness=stickiness)
    router = a.argo_traffic_router if a.canary_mechanism == CanaryMechanism.argo_rollouts else None
    canary = CanarySpec(mechanism=a.canary_mechanism, steps=[t.split], pause_minutes=60, traffic_router=router,
                        header=ARM_HEADER)
    log.decide("experiment", {"n_per_arm": {"A": size.n_a, "B": size.n_b}, "duration_hours": hours},
               f"A/B test on {t.metric}: MDE {t.mde:g}, alpha {t.alpha:g}, power {t.power:g}, split "
               f"{100 - t.split}/{t.split} -> {size.n_a} requests in A and {size.n_b} in B "
               f"({labelled:.0%} of requests logged{' and labelled' if t.metric != 'latency' else ''}), "
               f"about {hours:g} h at {traffic:g} req/s (fixed-horizon two-sided z-test, the least it runs)")
    return canary, design


def payload_logging(a: Answers) -> PayloadLogging:
    """The plan's payload log: on for an A/B test (its analysis reads the logs), as answered otherwise."""
    logging = a.payload_logging
    if a.rollout != Rollout.ab or logging.enabled:
        return logging
    if "enabled" in logging.model_fields_set:
        raise StageError("rollout ab with payload_logging.enabled false: the experiment's analysis reads the payload "
                         "log", ["answers: payload_logging: enabled: true (sampling 1.0 by default), or another rollout"])
    return logging.model_copy(update={"enabled": True})
