"""Stage `plan`: the decision tree of the original command, applied to a model profile and the answers.

Every choice is recorded in `decisions` with the rule that made it, so the report (and a reviewer)
can see why the bundle looks the way it does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, read_yaml, write_yaml
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.plan import bounds, releases
from deploy_model.plan.cluster_fit import enforce_cluster, fit_answers
from deploy_model.plan.spec import (
    Answers,
    Batching,
    BatchJob,
    CanaryMechanism,
    CanarySpec,
    Decision,
    DeploymentSpec,
    Device,
    EdgeSpec,
    KubernetesSpec,
    ModelRef,
    Resources,
    Rollout,
    RolloutSpec,
    Scaling,
    Serving,
    ServingPattern,
    ShadowMechanism,
    ShadowSpec,
    Slo,
    Target,
    TensorSpec,
    Traffic,
    parse_answers,
)
from deploy_model.plan.specfile import SPEC_FILE

ANSWERS_FILE = "answers.yaml"

# "Is latency critical?" in the original tree means an objective under this many milliseconds.
LATENCY_CRITICAL_MS = 100.0
# "High throughput?": from this many requests/s, server-side dynamic batching pays for its delay.
HIGH_THROUGHPUT_RPS = 50.0
# Plan replicas to run at this fraction of measured capacity, leaving headroom for spikes.
CAPACITY_HEADROOM = 0.6
DEFAULT_MAX_BATCH = 32
# Patterns with no live traffic to split, mirror or switch: only a direct rollout makes sense there.
NO_TRAFFIC_SPLIT = {
    ServingPattern.batch: "a scheduled job scores files; there is no live traffic to split, mirror or switch "
                          "(a new version takes effect with the next run)",
    ServingPattern.edge: "the model ships inside the device build; there is no served traffic to split, mirror or switch",
}
# Replicas for availability during node drains and rollouts, whatever the measured capacity.
MIN_AVAILABLE_REPLICAS = 2
# A previous plan's replica count is kept while the new need stays within this fraction of it:
# inspect's timings move by tens of percent on a busy machine, and a plan should not follow them.
REPLICA_HYSTERESIS = 0.25
# CPU cost of one HTTP request in the reference server before any inference (JSON parse, routing,
# response): FastAPI + uvicorn answer about 2-4k small requests/s per core. Capacity estimates add it
# so a tiny model does not plan for millions of requests/s per replica.
HTTP_OVERHEAD_MS = 0.5
# Several server processes per pod pay off when one process is capped by its Python cost per
# request, not by the model: batch-1 p50 at or under the HTTP overhead above. bench/README.md
# measured 1.27x-1.71x the requests/s with 2 workers vs 1 on 2 cores for such a model. Capped at 4:
# each worker holds its own session (memory) and the gain flattens past a few cores.
OVERHEAD_BOUND_P50_MS = HTTP_OVERHEAD_MS
MAX_WORKERS = 4


class Planner:
    # The replicas the capacity rule gave in the plan this one replaces (the deployment.yaml already in
    # the directory, same model): `scaling` keeps it while the new need is within REPLICA_HYSTERESIS.
    prior_replicas: int | None = None

    def __init__(self, profile: dict[str, Any], answers: Answers, previous: Path | None = None) -> None:
        self.profile = profile
        self.answers = answers
        self.decisions: list[Decision] = []
        # The version serving now, read from the previous deployment directory (plan --previous).
        self.previous, self.previous_rule = (releases.from_directory(previous, profile["model"]["sha256"])
                                             if previous is not None else (None, ""))

    def decide(self, decision: str, value: Any, rule: str) -> Any:
        self.decisions.append(Decision(decision=decision, value=value, rule=rule))
        return value

    # -- the decision tree -------------------------------------------------------------------

    def pattern(self) -> ServingPattern:
        a = self.answers
        if a.target == Target.edge:
            return self.decide(
                "serving_pattern", ServingPattern.edge,
                "target is edge -> the model runs on the device; quantize first",
            )
        if a.latency_sla_ms < LATENCY_CRITICAL_MS:
            return self.decide(
                "serving_pattern", ServingPattern.realtime,
                f"latency SLA {a.latency_sla_ms:g} ms < {LATENCY_CRITICAL_MS:g} ms is latency-critical -> real-time serving",
            )
        if a.traffic == Traffic.batch:
            return self.decide(
                "serving_pattern", ServingPattern.batch,
                f"latency SLA {a.latency_sla_ms:g} ms is not critical and traffic is batch -> scheduled batch inference",
            )
        if a.traffic == Traffic.streaming:
            return self.decide(
                "serving_pattern", ServingPattern.event_driven,
                f"latency SLA {a.latency_sla_ms:g} ms is not critical and traffic is streaming -> message queue + workers",
            )
        return self.decide(
            "serving_pattern", ServingPattern.realtime,
            f"latency SLA {a.latency_sla_ms:g} ms is not critical, but callers wait for answers (traffic realtime) -> real-time serving",
        )

    def protocol(self, pattern: ServingPattern) -> Any:
        proto = self.answers.protocol
        if pattern == ServingPattern.realtime:
            rule = (
                "protocol answer grpc -> Open Inference Protocol over gRPC for internal low-latency callers"
                if proto.value == "grpc"
                else "default REST (Open Inference Protocol v2 + /predict): any client can call it"
            )
        else:
            rule = f"{pattern.value} pattern has no request path; the server still exposes REST for health and metrics"
        return self.decide("protocol", proto, rule)

    def device(self) -> Device:
        requested = self.answers.device
        available = self.profile.get("onnxruntime", {}).get("available_providers", [])
        if requested != Device.auto:
            return self.decide("device", requested, f"device answered explicitly: {requested.value}")
        if self.answers.target == Target.edge:
            return self.decide("device", Device.cpu, "edge target -> CPU build of onnxruntime on the device")
        if "TensorrtExecutionProvider" in available:
            return self.decide("device", Device.tensorrt, "auto: TensorRT provider available where inspect ran")
        if "CUDAExecutionProvider" in available:
            return self.decide("device", Device.cuda, "auto: CUDA provider available where inspect ran")
        return self.decide(
            "device", Device.cpu,
            "auto: no GPU provider in onnxruntime where inspect ran -> CPU (answer device: cuda to target GPU nodes)",
        )

    def batch_latency(self, batch_size: int) -> float | None:
        latency = self.profile.get("latency") or {}
        for row in latency.get("batches", []):
            if row.get("batch_size") == batch_size and "p50_ms" in row:
                return float(row["p50_ms"])
        return None

    def measured_batches(self) -> list[tuple[int, float]]:
        """(batch size, p95 ms, else p50) of every batch size above 1 that inspect timed."""
        rows = []
        for row in (self.profile.get("latency") or {}).get("batches", []):
            ms = row.get("p95_ms", row.get("p50_ms"))
            if isinstance(row.get("batch_size"), int) and row["batch_size"] > 1 and ms is not None:
                rows.append((int(row["batch_size"]), float(ms)))
        return sorted(rows)

    def batch_that_fits(self, delay: float) -> tuple[int | None, str]:
        """The largest measured batch size whose latency plus the batching delay stays within the SLA."""
        sla = self.answers.latency_sla_ms
        measured = [(b, ms) for b, ms in self.measured_batches() if b <= DEFAULT_MAX_BATCH]
        if not measured:
            return None, "no latency was measured above batch 1 (see inspect's latency)"
        seen = ", ".join(f"batch {b}: {ms:g} ms" for b, ms in measured)
        fits = [b for b, ms in measured if ms + delay <= sla]
        if not fits:
            return None, f"measured {seen}; none fits the {sla:g} ms SLA with a {delay:g} ms batching delay"
        return max(fits), f"measured {seen}; batch {max(fits)} fits the {sla:g} ms SLA with a {delay:g} ms delay"

    def batching(self, pattern: ServingPattern) -> Batching:
        a = self.answers
        dynamic = bool(self.profile.get("dynamic_batch"))
        delay = a.max_batch_delay_ms if a.max_batch_delay_ms is not None else round(min(5.0, a.latency_sla_ms / 20), 2)
        size = a.max_batch_size or DEFAULT_MAX_BATCH
        # Off or on, max_batch_size bounds only what the server *combines*: a client may still send
        # any number of rows in one request (the model's batch dim is dynamic).
        if not dynamic:
            enabled = False
            rule = "the model has no dynamic batch dim -> server-side batching off"
            size = 1
        elif pattern in (ServingPattern.batch, ServingPattern.event_driven):
            enabled = True
            rule = f"{pattern.value} pattern scores many rows at once -> batches of up to {size}"
        elif a.max_batch_size is not None:
            enabled = a.max_batch_size > 1
            rule = f"max_batch_size answered explicitly: {a.max_batch_size}"
        elif a.requests_per_second >= HIGH_THROUGHPUT_RPS:
            fits, seen = self.batch_that_fits(delay)
            enabled = fits is not None
            size = fits or 1
            rule = (
                f"high throughput ({a.requests_per_second:g} req/s >= {HIGH_THROUGHPUT_RPS:g}) and a dynamic batch dim; "
                + (f"{seen} -> dynamic batching, up to {size} per batch, waiting at most {delay} ms (SLA/20, capped at 5 ms)"
                   if enabled else f"{seen} -> batching off (answer max_batch_size to force it)")
            )
        else:
            enabled = False
            rule = (f"low throughput ({a.requests_per_second:g} req/s < {HIGH_THROUGHPUT_RPS:g}) -> no batching delay "
                    "(requests of many rows are still accepted)")
        self.decide("batching", {"enabled": enabled, "max_batch_size": size if enabled else 1}, rule)
        return Batching(
            enabled=enabled,
            max_batch_size=size if enabled else 1,
            max_batch_delay_ms=delay if enabled else 0.0,
            max_queue_size=max(64, 4 * size),
        )

    def resources(self, device: Device, batching: Batching) -> Resources:
        model_mib = self.profile["model"]["bytes"] / (1 << 20)
        # onnxruntime holds the weights plus arena buffers; 3x the file plus the Python runtime is a
        # measured-safe floor for CPU sessions, rounded up to 128 MiB steps.
        memory = max(512, math.ceil((3 * model_mib + 384) / 128) * 128)
        cpu = "2" if batching.enabled else "1"
        gpu = 1 if device in (Device.cuda, Device.tensorrt) else 0
        rule = f"model {model_mib:.1f} MiB -> {memory}Mi memory (3x weights + runtime); {cpu} CPU"
        if gpu:
            rule += "; one nvidia.com/gpu for the GPU provider"
            memory = max(memory, 2048)
        self.decide("resources", {"cpu": cpu, "memory": f"{memory}Mi", "gpu": gpu}, rule)
        return Resources(
            cpu_request=cpu, cpu_limit=cpu, memory_request=f"{memory}Mi", memory_limit=f"{memory}Mi", gpu=gpu
        )

    def workers(self, pattern: ServingPattern, device: Device, resources: Resources) -> int:
        """Server processes per pod, from the pod's CPU request and the model's batch-1 latency."""
        cpus = max(1, math.floor(float(resources.cpu_request.rstrip("m"))
                                 / (1000 if resources.cpu_request.endswith("m") else 1)))
        p50 = self.batch_latency(1)
        bench = "bench/README.md: 2 workers served 1.27x-1.71x the requests/s of 1 on 2 cores for an overhead-bound model"
        if pattern != ServingPattern.realtime:
            return self.decide("workers", 1, f"{pattern.value} pattern has no request path -> 1 server process")
        if device != Device.cpu:
            return self.decide("workers", 1, f"device {device.value}: one process per GPU (each worker would hold its own copy on the device)")
        if cpus < 2:
            return self.decide("workers", 1, f"{resources.cpu_request} CPU requested -> 1 server process")
        if p50 is None:
            return self.decide("workers", 1, "no batch-1 latency measured -> 1 server process")
        if p50 > OVERHEAD_BOUND_P50_MS:
            return self.decide("workers", 1, f"batch-1 p50 {p50:g} ms > {OVERHEAD_BOUND_P50_MS:g} ms: the model, not Python's "
                               f"per-request cost, bounds throughput -> 1 process using all {cpus} CPUs for onnxruntime")
        workers = min(cpus, MAX_WORKERS)
        return self.decide("workers", workers, f"batch-1 p50 {p50:g} ms <= {OVERHEAD_BOUND_P50_MS:g} ms (overhead-bound) and "
                           f"{cpus} CPUs requested -> {workers} processes (one per CPU, at most {MAX_WORKERS}), "
                           f"{max(1, cpus // workers)} onnxruntime thread(s) each; {bench}")

    def scaling(self, pattern: ServingPattern, batching: Batching) -> Scaling:
        a = self.answers
        p50_1 = self.batch_latency(1)
        size = batching.max_batch_size
        p50_n = self.batch_latency(size) if batching.enabled and size > 1 else None
        per_replica: float | None = None
        if p50_n:
            per_replica = 1000 / (p50_n / size + HTTP_OVERHEAD_MS)
        elif p50_1:
            per_replica = 1000 / (p50_1 + HTTP_OVERHEAD_MS)
        if per_replica:
            per_replica = float(f"{per_replica:.2g}")  # two significant digits: timing noise is not a planning input
        if a.target == Target.serverless:
            low = a.min_replicas if a.min_replicas is not None else 0
            high = a.max_replicas or 10
            self.decide("scaling", {"min": low, "max": high}, "serverless target -> scale to zero when idle")
            return Scaling(
                replicas=max(1, low), min_replicas=low, max_replicas=high, target_cpu_utilization=70,
                scale_to_zero=low == 0, estimated_rps_per_replica=per_replica,
            )
        if pattern in (ServingPattern.batch, ServingPattern.edge):
            self.decide("scaling", {"replicas": 1}, f"{pattern.value} pattern -> no long-running replicas to scale")
            return Scaling(replicas=1, min_replicas=1, max_replicas=1, target_cpu_utilization=70,
                           estimated_rps_per_replica=per_replica)
        if per_replica:
            raw = a.requests_per_second / (per_replica * CAPACITY_HEADROOM)
            needed = max(1, math.ceil(raw))
            needed = bounds.replicas_needed(needed, a.requests_per_second, per_replica)  # refused past the cap
            rule = (
                f"capacity ~{per_replica:g} req/s per replica (measured inference + {HTTP_OVERHEAD_MS} ms HTTP overhead, "
                f"2 significant digits), planned at {int(CAPACITY_HEADROOM * 100)}% -> ceil({a.requests_per_second:g} / "
                f"{per_replica * CAPACITY_HEADROOM:g}) = {needed} replica(s)"
            )
            prior = self.prior_replicas
            if prior and prior != needed and raw <= prior * (1 + REPLICA_HYSTERESIS) and raw > (prior - 1) * (1 - REPLICA_HYSTERESIS):
                rule += (f"; kept at the previous plan's {prior} (the need {raw:.2f} is within "
                         f"{int(REPLICA_HYSTERESIS * 100)}% of it: timing noise does not move replicas)")
                needed = prior
        else:
            needed = 1
            rule = "no latency measurement -> one replica's worth of capacity assumed"
        low = a.min_replicas if a.min_replicas is not None else max(MIN_AVAILABLE_REPLICAS, needed)
        if a.min_replicas is None:
            rule += f"; at least {MIN_AVAILABLE_REPLICAS} for availability during node drains"
        high = a.max_replicas if a.max_replicas is not None else max(low * 3, low + 2)
        high = min(max(high, low), bounds.MAX_REPLICAS)
        self.decide("scaling", {"min": low, "max": high, "capacity_replicas": needed},
                    rule + f"; HPA between {low} and {high} at 70% CPU")
        return Scaling(replicas=low, min_replicas=low, max_replicas=high, target_cpu_utilization=70,
                       estimated_rps_per_replica=round(per_replica, 1) if per_replica else None)

    def rollout(self, pattern: ServingPattern | None = None) -> RolloutSpec:
        a = self.answers
        strategy = a.rollout
        canary = shadow = None
        if pattern in NO_TRAFFIC_SPLIT and strategy != Rollout.direct:
            why = NO_TRAFFIC_SPLIT[pattern]
            if "rollout" in a.model_fields_set:  # answered: refuse; defaulted: the only rollout that fits
                raise StageError(f"rollout {strategy.value!r} makes no sense for the {pattern.value} pattern: {why}",
                                 [f"answers: rollout: got {strategy.value!r}; expected 'direct' for {pattern.value} plans"])
            self.decide("rollout", Rollout.direct, f"{pattern.value} pattern -> direct: {why}")
            return RolloutSpec(strategy=Rollout.direct)
        if strategy == Rollout.canary:
            steps = sorted({a.canary_weight, 50, 100}) if a.canary_weight < 100 else [100]
            router = a.argo_traffic_router if a.canary_mechanism == CanaryMechanism.argo_rollouts else None
            canary = CanarySpec(mechanism=a.canary_mechanism, steps=steps, pause_minutes=60, traffic_router=router)
            rule = (
                f"canary via {a.canary_mechanism.value}: steps {steps}% with 60 min watches; roll back when the "
                "error rate passes 2x or p95 latency 1.5x the stable version"
            )
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
        self.decide("rollout", strategy, rule)
        return RolloutSpec(strategy=strategy, canary=canary, shadow=shadow)

    # -- the whole plan ----------------------------------------------------------------------

    def plan(self) -> DeploymentSpec:
        a = self.answers
        model = self.profile["model"]
        name = a.name or model["name"]
        self.decide("name", name, "answered" if a.name else "derived from the model file name")
        pattern = self.pattern()
        protocol = self.protocol(pattern)
        device = self.device()
        batching = self.batching(pattern)
        resources = self.resources(device, batching)
        workers = self.workers(pattern, device, resources)
        scaling = self.scaling(pattern, batching)
        rollout = self.rollout(pattern)
        edge = None
        if pattern == ServingPattern.edge:
            quantize = True if a.quantize is None else a.quantize
            self.decide("quantize", quantize, "edge deployment -> quantize to INT8 first" if a.quantize is None else "answered")
            edge = EdgeSpec(quantize=quantize)
        batch = self.batch_job(name) if pattern == ServingPattern.batch else None
        image = a.image or f"registry.example.com/{name}"
        self.refuse_unscalable(pattern, scaling)
        on_gpu = device in (Device.cuda, Device.tensorrt)
        stable = self.previous or releases.from_answers(a, image, on_gpu)
        self.release(stable, model, rollout)
        self.refuse_unscored_shadow(stable, model, rollout)
        if stable is not None and rollout.strategy == Rollout.direct and stable.sha256 != model["sha256"]:
            # Direct: no second track; the candidate is promoted by this very plan (rolling update).
            stable = stable.model_copy(update={
                "version": str(model["version"]), "image": f"{image}:{releases.tag_for(str(model['version']), on_gpu)}",
                "sha256": model["sha256"], "model_path": model["path"], "bytes": model["bytes"], "track": "stable"})
        return DeploymentSpec(
            name=name,
            target=a.target,
            traffic=a.traffic,
            model=ModelRef(
                name=name,
                path=model["path"],
                format=model["format"],
                sha256=model["sha256"],
                bytes=model["bytes"],
                version=str(model["version"]),
                opset=self.profile.get("opset"),
                inputs=[TensorSpec(name=t["name"], dtype=t["dtype"], shape=t["shape"]) for t in self.profile["inputs"]],
                outputs=[TensorSpec(name=t["name"], dtype=t["dtype"], shape=t["shape"]) for t in self.profile["outputs"]],
                dynamic_batch=bool(self.profile.get("dynamic_batch")),
                parameters=int(self.profile.get("parameters", 0)),
            ),
            serving=Serving(pattern=pattern, protocol=protocol, device=device, allow_cpu_fallback=a.allow_cpu_fallback,
                            workers=workers),
            batching=batching,
            resources=resources,
            scaling=scaling,
            rollout=rollout,
            slo=Slo(latency_p95_ms=a.latency_sla_ms, target_rps=a.requests_per_second),
            kubernetes=KubernetesSpec(
                version=a.kubernetes_version, namespace=a.namespace, host=a.host, image=image,
                network_policy=a.network_policy, serverless_mechanism=a.serverless_mechanism,
            ),
            batch=batch,
            edge=edge,
            stable=stable,
            decisions=self.decisions,
        )

    def batch_job(self, name: str) -> BatchJob:
        a = self.answers
        remote = [u for u in (a.batch_input, a.batch_output) if "://" in u]
        secret = (a.batch_credentials_secret or f"{name}-storage") if remote else None
        on_volume = len(remote) < 2
        if a.batch_parallelism > 1:
            self.decide("batch_parallelism", a.batch_parallelism,
                        f"an Indexed Job of {a.batch_parallelism} pods: pod i scores shard i of N into the same output, "
                        "each with its own journal, so a retried index resumes"
                        + (" (the data volume is ReadWriteMany: pods on several nodes mount it)" if on_volume else ""))
        if secret:
            self.decide("batch_credentials_secret", secret,
                        f"{', '.join(remote)} on object storage: credentials come from the Secret {secret} (create it "
                        "before the first run; its keys become the pod's environment)")
        return BatchJob(schedule=a.batch_schedule, input_uri=a.batch_input, output_uri=a.batch_output,
                        parallelism=a.batch_parallelism, credentials_secret=secret, volume=on_volume)

    def refuse_unscalable(self, pattern: ServingPattern, scaling: Scaling) -> None:
        """An HPA cannot hold zero replicas (minReplicas >= 1 on CPU); only Knative and KEDA scale to zero."""
        a = self.answers
        if a.min_replicas == 0 and a.target == Target.kubernetes and pattern == ServingPattern.realtime:
            raise StageError(
                "min_replicas 0 on target kubernetes: a HorizontalPodAutoscaler needs minReplicas >= 1 (the API "
                "server rejects 0 without an Object/External metric); scale to zero needs target: serverless "
                "(Knative) or traffic: streaming (KEDA workers); expected min_replicas >= 1"
            )

    def refuse_unscored_shadow(self, stable: Any, model: dict[str, Any], rollout: RolloutSpec) -> None:
        """In-process shadow pods answer with the stable model and score the candidate: both files are needed."""
        shadow = rollout.shadow
        if rollout.strategy != Rollout.shadow or shadow is None or shadow.mechanism != ShadowMechanism.in_process:
            return
        if stable is None or stable.sha256 == model["sha256"]:
            return  # first release or promotion: nothing runs in shadow
        if not stable.model_path or not Path(stable.model_path).is_file():
            raise StageError(
                f"rollout shadow (in-process) scores the candidate {model['version']} beside the stable model "
                f"{stable.version}, whose file is unknown (got {stable.model_path!r}); expected plan --previous DIR "
                "(its model file) or stable_model: PATH, or shadow_mechanism istio / gateway-api (mirroring)")

    def release(self, stable: Any, model: dict[str, Any], rollout: RolloutSpec) -> None:
        """Record which version serves now and what this bundle does with the candidate."""
        strategy = rollout.strategy.value
        if stable is None:
            self.decide("release", "first", f"first release (no previous version): the candidate {model['version']} is "
                        f"deployed directly; the {strategy} rollout applies from the next release (plan --previous DIR)"
                        if strategy != "direct" else "first release (no previous version): deployed directly")
        elif stable.sha256 == model["sha256"]:
            self.decide("release", "promotion", f"{self.previous_rule or 'stable'}: the candidate {model['version']} is "
                        "the stable version now; stable objects run it and the candidate objects go")
        elif strategy == "direct":
            self.decide("release", {"stable": stable.version, "candidate": model["version"]},
                        f"{self.previous_rule or 'stable version answered'}; direct: {model['version']} replaces "
                        f"{stable.version} at once (rolling update); rollback applies the previous directory's bundle")
        else:
            self.decide("release", {"stable": stable.version, "candidate": model["version"]},
                        f"{self.previous_rule or 'stable version answered'}; {stable.version} keeps serving from the stable "
                        f"objects while {model['version']} rolls out by {strategy}")


def prior_replicas(path: Path, profile: dict[str, Any]) -> int | None:
    """The capacity replicas of an earlier plan of the same model in this directory, or None."""
    if not path.is_file():
        return None
    try:
        earlier = read_yaml(path, "previous deployment spec")
    except StageError:
        return None  # an unreadable earlier plan is replaced, not trusted
    if not isinstance(earlier, dict) or (earlier.get("model") or {}).get("sha256") != profile["model"]["sha256"]:
        return None
    for decision in earlier.get("decisions") or []:
        value = decision.get("value") if isinstance(decision, dict) else None
        if decision.get("decision") == "scaling" and isinstance(value, dict) and isinstance(value.get("capacity_replicas"), int):
            return int(value["capacity_replicas"])
    return None


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
    planner = Planner(profile, answers, previous)
    planner.prior_replicas = prior_replicas(out_dir / SPEC_FILE, profile)
    spec = planner.plan()
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
        },
        "decisions": [d.model_dump(mode="json") for d in spec.decisions],
        "spec": spec.to_yaml_dict() if dry_run else None,
    }
