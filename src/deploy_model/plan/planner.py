"""Stage `plan`: the decision tree of the original command, applied to a model profile and the answers.

This module reads the profile and the answers, calls the decisions in order (one `decide_*` module
each: serving pattern, protocol, device, batching, resources, workers, scaling, rollout, edge build,
batch Job, release) and writes deployment.yaml. Every choice is recorded in `decisions` with the
rule that made it, so the report (and a reviewer) can see why the bundle looks the way it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, read_yaml, write_yaml
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.plan import releases
from deploy_model.plan.cluster_fit import enforce_cluster, fit_answers
from deploy_model.plan.decide_batch_job import decide_batch_job
from deploy_model.plan.decide_batching import decide_batching
from deploy_model.plan.decide_device import decide_device
from deploy_model.plan.decide_edge import decide_edge
from deploy_model.plan.decide_experiment import payload_logging
from deploy_model.plan.decide_feasibility import decide_feasibility, infeasible_reason
from deploy_model.plan.decide_name import decide_name
from deploy_model.plan.decide_pattern import decide_pattern
from deploy_model.plan.decide_protocol import decide_protocol
from deploy_model.plan.decide_release import decide_release, serving_now
from deploy_model.plan.decide_resources import decide_resources
from deploy_model.plan.decide_rollout import decide_rollout
from deploy_model.plan.decide_scaling import decide_scaling, prior_replicas, refuse_unscalable
from deploy_model.plan.decide_version import decide_version
from deploy_model.plan.decide_workers import decide_workers
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import (
    Answers,
    DeploymentSpec,
    Device,
    KubernetesSpec,
    ModelRef,
    Monitoring,
    Serving,
    ServingPattern,
    Slo,
    StableRelease,
    TensorSpec,
    parse_answers,
)
from deploy_model.plan.specfile import SPEC_FILE


def plan_spec(
    profile: dict[str, Any], answers: Answers, previous: StableRelease | None = None, previous_rule: str = "",
    prior: int | None = None, previous_name: str | None = None,
) -> DeploymentSpec:
    """The DeploymentSpec of the decision tree, each choice recorded in `decisions` with its rule.

    previous: the version serving now (plan --previous), previous_rule why and previous_name the
    deployment it runs in; prior: the capacity replicas of the plan this one replaces, kept while
    the new need is within the hysteresis.
    """
    a = answers
    log = DecisionLog()
    model = profile["model"]
    name = decide_name(log, a, model, previous_name)
    pattern = decide_pattern(log, a)
    protocol = decide_protocol(log, a, pattern)
    device = decide_device(log, profile, a)
    batching = decide_batching(log, profile, a, pattern)
    resources = decide_resources(log, profile, device, batching)
    workers = decide_workers(log, profile, pattern, device, resources)
    scaling = decide_scaling(log, profile, a, pattern, batching, prior)
    decide_feasibility(log, profile, a, pattern, device)  # warns (never refuses) when no replica meets the SLA
    rollout = decide_rollout(log, a, pattern)
    edge = decide_edge(log, a) if pattern == ServingPattern.edge else None
    batch = decide_batch_job(log, a, name) if pattern == ServingPattern.batch else None
    image = a.image or f"registry.example.com/{name}"
    refuse_unscalable(a, pattern)
    on_gpu = device in (Device.cuda, Device.tensorrt)
    current = serving_now(a, image, on_gpu, previous)
    model = {**model, "version": decide_version(log, a, model, current)}
    stable = decide_release(log, model, rollout, image, on_gpu, current, previous_rule)
    return DeploymentSpec(
        name=name,
        target=a.target,
        traffic=a.traffic,
        model=model_ref({**profile, "model": model}, name),
        serving=Serving(pattern=pattern, protocol=protocol, device=device, allow_cpu_fallback=a.allow_cpu_fallback,
                        workers=workers),
        batching=batching,
        resources=resources,
        scaling=scaling,
        rollout=rollout,
        slo=Slo(latency_p95_ms=a.latency_sla_ms, target_rps=a.requests_per_second),
        monitoring=Monitoring(drift_reference=a.drift_reference),
        kubernetes=KubernetesSpec(
            version=a.kubernetes_version, namespace=a.namespace, host=a.host, image=image,
            network_policy=a.network_policy, serverless_mechanism=a.serverless_mechanism,
            gateway=a.gateway, gateway_namespace=a.gateway_namespace,
        ),
        batch=batch,
        edge=edge,
        stable=stable,
        payload_logging=payload_logging(a),  # on for an A/B test: its analysis reads the log
        decisions=log.decisions,
    )


def model_ref(profile: dict[str, Any], name: str) -> ModelRef:
    """The profiled model (the candidate) as the spec records it."""
    model = profile["model"]
    return ModelRef(
        name=name,
        path=model["path"],
        format=model["format"],
        sha256=model["sha256"],
        bytes=model["bytes"],
        version=str(model["version"]),
        opset=profile.get("opset"),
        inputs=[TensorSpec(name=t["name"], dtype=t["dtype"], shape=t["shape"]) for t in profile["inputs"]],
        outputs=[TensorSpec(name=t["name"], dtype=t["dtype"], shape=t["shape"]) for t in profile["outputs"]],
        dynamic_batch=bool(profile.get("dynamic_batch")),
        parameters=int(profile.get("parameters", 0)),
    )


def load_answers(answers_file: Path | None, overrides: dict[str, Any]) -> Answers:
    """Answers from the file (if any) with flag overrides on top; every problem reported at once."""
    data: dict[str, Any] = {}
    source = "answers"
    if answers_file is not None:
        loaded = read_yaml(answers_file, "answers file")
        if loaded is not None and not isinstance(loaded, dict):
            raise StageError(f"answers file {answers_file} must be a mapping of question: answer, got {type(loaded).__name__}")
        data.update(loaded or {})
        source = str(answers_file)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_answers(data, source)


def run_plan(
    out_dir: Path, answers_file: Path | None, overrides: dict[str, Any], dry_run: bool = False,
    previous: Path | None = None,
) -> dict[str, Any]:
    profile = read_json(out_dir / PROFILE_FILE, "model profile")
    if not isinstance(profile, dict) or "model" not in profile or "inputs" not in profile:
        raise StageError(f"{out_dir / PROFILE_FILE} is not a model profile (run inspect first)")
    answers = load_answers(answers_file, overrides)
    answers, cluster_picks = fit_answers(out_dir, answers)  # unanswered mechanisms: what cluster.json serves
    # The version serving now, read from the previous deployment directory (plan --previous).
    stable, stable_rule, stable_name = (releases.from_directory(previous, profile["model"]["sha256"])
                                        if previous is not None else (None, "", None))
    spec = plan_spec(profile, answers, stable, stable_rule, prior_replicas(out_dir / SPEC_FILE, profile), stable_name)
    enforce_cluster(out_dir, spec, cluster_picks)  # cluster.json (deploy-model cluster), when present: refuse what it lacks
    out = out_dir / SPEC_FILE
    if not dry_run:
        header = (
            "# DeploymentSpec written by `deploy-model plan`. Edit the answers and re-run plan rather\n"
            "# than editing this file: `decisions` records why each value was chosen.\n"
        )
        write_yaml(out, spec.to_yaml_dict(), header)
    return {
        "stage": "plan",
        "ok": True,
        "wrote": [] if dry_run else [str(out)],
        "dry_run": dry_run,
        "summary": {
            "name": spec.name,
            "pattern": spec.serving.pattern.value,
            "target": spec.target.value,
            "protocol": spec.serving.protocol.value,
            "device": spec.serving.device.value,
            "batching": spec.batching.enabled,
            "replicas": f"{spec.scaling.min_replicas}-{spec.scaling.max_replicas}",
            "rollout": spec.rollout.strategy.value,
            **({"experiment": f"A {e.n_a} and B {e.n_b} requests, about {e.duration_hours:g} h at {e.traffic_rps:g} req/s"}
               if (e := spec.rollout.experiment) else {}),  # an A/B test's sample size and duration
            **({"warnings": [w]} if (w := infeasible_reason(spec.decisions)) else {}),  # as inspect's summary
        },
        "decisions": [d.model_dump(mode="json") for d in spec.decisions],
        "spec": spec.to_yaml_dict() if dry_run else None,
    }
