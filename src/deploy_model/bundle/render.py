"""Stage `render`: every artifact of the deployment bundle, from deployment.yaml and templates/bundle/.

The bundle is rendered into a temporary folder inside the deployment directory and moved into
place only when every file rendered, so a failure never leaves half a bundle. Every value that
reaches YAML goes through the `y` filter (JSON, which YAML reads as a quoted scalar or flow
collection), so an answer holding `: `, a newline or `{{` cannot change a document's structure.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from deploy_model import __version__
from deploy_model.bundle import alerting, lockfile, ownership
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, sha256_file
from deploy_model.plan import releases
from deploy_model.plan.spec import (
    WORKER_GROUP,
    WORKER_STREAM,
    CanaryMechanism,
    DeploymentSpec,
    Device,
    Rollout,
    ServingPattern,
    ShadowMechanism,
    Target,
)
from deploy_model.plan.specfile import SPEC_FILE, load_spec, resolve_model

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates" / "bundle"
SERVER_SOURCE = ROOT / "reference-server"
MANIFEST_FILE = "manifest.json"
# What render owns in the deployment directory; everything else belongs to other stages.
OWNED_DIRS = ("k8s", "monitoring", "batch", "ci", "server", "model")
SERVER_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ruff_cache", ".pytest_cache", "*.pyc", "build", "dist")

# Pinned base images (a tag with the full version; rebuilds are reproducible and reviewable).
PYTHON_IMAGE = "python:3.11.13-slim-bookworm"
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
REDIS_IMAGE = "redis:7.4.2-alpine"
# onnxruntime-gpu's published builds: since 1.19 the default wheel targets CUDA 12 and cuDNN 9
# (CUDA minor-version compatible, so the newest 12.x runtime image works).
CUDA_FOR_ORT = {"cuda": "12.8", "cudnn": "9", "image": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"}
PRESTOP_SECONDS = 5


@dataclass
class Workload:
    name: str
    track: str
    replicas: int
    env: dict[str, str]
    image: str = ""
    version: str = ""
    startup: int = 60
    component: str = "server"
    comment: str = ""
    kind: str = "Deployment"
    api_version: str = "apps/v1"
    # An HPA (or KEDA's) owns the replica count: the manifest then leaves spec.replicas out, or every
    # server-side apply would take the field back from the autoscaler and reset the count.
    autoscaled: bool = False


def y(value: Any) -> str:
    """A value as YAML: JSON text is a double-quoted scalar or a flow collection, never structure."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, ensure_ascii=True)


def pyrepr(value: Any) -> str:
    return repr(value)


def regex_escape(value: str) -> str:
    import re

    return re.escape(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(y=y, tojson=y, pyrepr=pyrepr, regex_escape=regex_escape)
    return env


# --- inputs -----------------------------------------------------------------------------------


def edge_model(spec: DeploymentSpec, directory: Path, warnings: list[str]) -> Path | None:
    """The accepted INT8 model of an edge plan (quantization.json from `quantize`), if any."""
    if spec.edge is None or not spec.edge.quantize:
        return None
    record = directory / "quantization.json"
    if not record.is_file():
        warnings.append("edge plan with quantize: true but no quantization.json: run `deploy-model quantize` "
                        "(deploy does) to ship the INT8 model; the bundle holds the original model only")
        return None
    figures = json.loads(record.read_text(encoding="utf-8"))
    if figures.get("verdict") != "accepted" or not figures.get("quantized_model"):
        warnings.append(f"INT8 model refused by quantize ({figures.get('verdict')}): the bundle ships the original model")
        return None
    path = Path(figures["quantized_model"])
    if not path.is_absolute():  # quantize names it relative to the deployment directory
        path = directory / path
    if not path.is_file():
        warnings.append(f"quantization.json names {path}, which is gone: the bundle ships the original model")
        return None
    return path


def resolve_stable_model(spec: DeploymentSpec, directory: Path) -> Path:
    """The stable model file, which an in-process shadow ships beside the candidate (checked by sha256)."""
    stable = spec.stable
    assert stable is not None
    if not stable.model_path:
        raise StageError("in-process shadow ships the stable model beside the candidate, but deployment.yaml names no "
                         "stable model file: plan with --previous DIR (or answer stable_model: PATH)")
    raw = Path(stable.model_path)
    for path in ([raw] if raw.is_absolute() else [Path.cwd() / raw, directory / raw]):
        if path.is_file():
            digest = sha256_file(path)
            if len(stable.sha256) == 64 and digest != stable.sha256:
                raise StageError(f"stable model {path} has sha256 {digest[:12]}, but the stable release is {stable.sha256[:12]}: "
                                 "expected the model serving now")
            return path
    raise StageError(f"stable model {stable.model_path!r} not found: in-process shadow ships it beside the candidate")


def image_tag(version: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version):
        raise StageError(
            f"model version {version!r} cannot be an image tag: expected letters, digits, '_', '.', '-' "
            "(at most 128, not starting with '.' or '-')"
        )
    return version


# --- the context the templates see ----------------------------------------------------------


# The reference worker's default stream and consumer group (python -m onnxserve.worker).


def server_env(spec: DeploymentSpec, model_file: str, shadow_file: str | None, grpc: bool) -> dict[str, str]:
    s = spec
    cpu = float(s.resources.cpu_limit.rstrip("m")) / (1000 if s.resources.cpu_limit.endswith("m") else 1)
    env = {
        "ONNXSERVE_MODEL": f"/models/{model_file}",
        "ONNXSERVE_MODEL_NAME": s.name,
        "ONNXSERVE_MODEL_VERSION": s.model.version,
        "ONNXSERVE_HOST": "0.0.0.0",
        "ONNXSERVE_PORT": str(s.serving.port),
        "ONNXSERVE_DEVICE": s.serving.device.value,
        "ONNXSERVE_ALLOW_CPU_FALLBACK": "true" if s.serving.allow_cpu_fallback else "false",
        "ONNXSERVE_MAX_BATCH_SIZE": str(s.batching.max_batch_size if s.batching.enabled else 1),
        "ONNXSERVE_MAX_BATCH_DELAY_MS": f"{s.batching.max_batch_delay_ms:g}",
        "ONNXSERVE_MAX_QUEUE_SIZE": str(s.batching.max_queue_size),
        "ONNXSERVE_REQUEST_TIMEOUT_MS": str(s.serving.request_timeout_ms),
        "ONNXSERVE_DRAIN_TIMEOUT_S": str(s.serving.drain_seconds),
        # Processes sharing the port (the plan's `workers` decision); each gets its own session.
        "ONNXSERVE_WORKERS": str(s.serving.workers),
        # Threads = the CPUs of the limit split between the workers, so onnxruntime does not
        # oversubscribe a throttled pod.
        "ONNXSERVE_INTRA_OP_THREADS": str(max(1, math.floor(cpu) // max(1, s.serving.workers))),
    }
    if grpc:
        env["ONNXSERVE_GRPC_PORT"] = str(s.serving.grpc_port)
    if shadow_file:
        env["ONNXSERVE_SHADOW_MODEL"] = f"/models/{shadow_file}"
        env["ONNXSERVE_SHADOW_SAMPLE_RATE"] = f"{spec.rollout.shadow.sample_rate:g}" if spec.rollout.shadow else "0.1"
    return env


def server_supports(option: str) -> bool:
    settings = SERVER_SOURCE / "src" / "onnxserve" / "settings.py"
    return settings.is_file() and f"{option}:" in settings.read_text(encoding="utf-8")


def analysis_metrics(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """Argo Rollouts gates: canary vs stable, each guarded against empty and NaN results."""
    s, g = spec, spec.rollout.gates
    window = "5m"

    def sel(track: str, extra: str = "") -> str:
        parts = [f'namespace="{s.kubernetes.namespace}"', f'app="{s.name}"', f'track="{track}"'] + ([extra] if extra else [])
        return "{" + ", ".join(parts) + "}"

    def rate(track: str, extra: str = "") -> str:
        return f"sum(rate(model_requests_total{sel(track, extra)}[{window}]))"

    def ratio(track: str) -> str:
        return f"(({rate(track, 'status=~' + chr(34) + '5..' + chr(34))} or vector(0)) / clamp_min({rate(track)}, 1e-9))"

    def p95(track: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket{sel(track)}[{window}])))"

    floor = s.slo.max_error_ratio / g.max_error_rate_ratio
    enough = f"and on() ({rate('canary')} >= {g.min_request_rate:g})"
    valid = "len(result) > 0 && !isNaN(result[0])"
    count = max(1, s.rollout.canary.pause_minutes // 5) if s.rollout.canary else 12
    return [
        {"name": "canary-traffic", "count": count,
         "doc": f"canary requests/s; below {g.min_request_rate:g} the other gates have no data (Inconclusive, never Successful)",
         "query": f"{rate('canary')} or vector(0)",
         "success": f"len(result) > 0 && result[0] >= {g.min_request_rate:g}", "failure": "len(result) > 0 && result[0] < 0"},
        {"name": "error-rate-ratio", "count": count,
         "doc": f"canary 5xx ratio / stable 5xx ratio (stable floored at {floor:g}); fails above {g.max_error_rate_ratio:g}",
         "query": f"{ratio('canary')} / clamp_min({ratio('stable')}, {floor:g}) {enough}",
         "success": f"{valid} && result[0] <= {g.max_error_rate_ratio:g}", "failure": f"{valid} && result[0] > {g.max_error_rate_ratio:g}"},
        {"name": "p95-latency-ratio", "count": count,
         "doc": f"canary p95 / stable p95; fails above {g.max_p95_latency_ratio:g}",
         "query": f"({p95('canary')}) / ({p95('stable')}) {enough}",
         "success": f"{valid} && result[0] <= {g.max_p95_latency_ratio:g}", "failure": f"{valid} && result[0] > {g.max_p95_latency_ratio:g}"},
        {"name": "p95-latency-sla", "count": count,
         "doc": f"canary p95 in seconds; fails above the {s.slo.latency_p95_ms:g} ms SLA",
         "query": f"({p95('canary')}) {enough}",
         "success": f"{valid} && result[0] <= {s.slo.latency_p95_ms / 1000:g}", "failure": f"{valid} && result[0] > {s.slo.latency_p95_ms / 1000:g}"},
    ]


@dataclass
class Plan:
    """Which file comes from which template, with its extra context."""

    files: list[tuple[str, str, dict[str, Any]]]
    warnings: list[str]


def build_context(spec: DeploymentSpec, directory: Path, model_path: Path) -> tuple[dict[str, Any], Plan]:
    s = spec
    name, ns = s.name, s.kubernetes.namespace
    pattern, strategy = s.serving.pattern, s.rollout.strategy
    gpu = releases.gpu(s)
    warnings: list[str] = []
    grpc = s.serving.protocol.value == "grpc" and server_supports("grpc_port")
    if s.serving.protocol.value == "grpc" and not grpc:
        warnings.append("protocol grpc: the reference server has no gRPC option yet; the bundle serves REST (V2) only")
    model_file = f"{name}.onnx"
    version = image_tag(s.model.version)
    image_ref = releases.candidate_image(s)
    kube = s.target in (Target.kubernetes, Target.serverless)
    shadow_mech = s.rollout.shadow.mechanism if s.rollout.shadow else None
    canary_mech = s.rollout.canary.mechanism if s.rollout.canary else None
    base_env = server_env(s, model_file, None, grpc)
    from deploy_model.model.bundle_sample import bundled_sample, image_path

    # The sample given to inspect travels in the image (samples/): the server warms up on real values.
    warmup_sample = bundled_sample(directory) if server_supports("warmup_sample") else None
    if warmup_sample:
        base_env["ONNXSERVE_WARMUP_SAMPLE"] = image_path(warmup_sample)
    replicas = s.scaling.replicas
    mode = releases.mode(s)
    # The stable release: what the stable objects run. On a first release or after a promotion
    # it is the candidate itself; otherwise the previous image, version and model size.
    if mode == releases.CANDIDATE and s.stable is not None:
        stable_image, stable_version = s.stable.image, s.stable.version
        stable_bytes = s.stable.bytes or s.model.bytes
    else:
        stable_image, stable_version, stable_bytes = image_ref, version, s.model.bytes
    stable_env = {**base_env, "ONNXSERVE_MODEL_VERSION": stable_version}
    live, ctrack = releases.live_track(s), releases.candidate_track(s)
    if mode == releases.FIRST and strategy != Rollout.direct and kube and pattern == ServingPattern.realtime:
        warnings.append(f"first release (no previous version): the candidate {s.model.version} is deployed directly; the "
                        f"{strategy.value} rollout starts with the next release (plan --previous {directory.name})")

    def startup_for(nbytes: int) -> int:
        mib = nbytes / (1 << 20)
        seconds = 600 if s.serving.device == Device.tensorrt else int(60 + mib / 10) + (60 if gpu else 0)
        return int(math.ceil(seconds / 5) * 5)

    def stable_wl(track: str, count: int, comment: str = "") -> Workload:
        return Workload(name=releases.workload_name(name, track), track=track, replicas=count, env=stable_env,
                        image=stable_image, version=stable_version, startup=startup_for(stable_bytes), comment=comment)

    def candidate_wl(track: str, count: int, env: dict[str, str] | None = None, comment: str = "") -> Workload:
        return Workload(name=releases.workload_name(name, track), track=track, replicas=count, env=env or base_env,
                        image=image_ref, version=version, startup=startup_for(s.model.bytes), comment=comment)

    def share(percent: float) -> int:
        """Replicas for a share of the traffic: the candidate is sized with its weight, at least one."""
        return max(1, math.ceil(replicas * percent / 100))

    workloads: list[Workload] = []
    services: list[dict[str, Any]] = []
    autoscaled: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    files: list[tuple[str, str, dict[str, Any]]] = []
    rollout_note = releases.effective_strategy(s)
    main = stable_wl(live, replicas)
    extra: dict[str, Any] = {"route": None, "mirror_percent": 0, "canary_steps": [], "analysis_metrics": [],
                             "ingress_canary": False, "argo_router": None, "traffic": [], "stable_model_file": None}

    def serve(w: Workload, selector: dict[str, str] | None = None, scaled: tuple[int, int] | None = None,
              service: str | None = None) -> None:
        """A workload with its Service, autoscaler and disruption budget, all on constant selectors."""
        sel = selector or {"app": name, "track": w.track}
        services.append({"name": service or w.name, "selector": sel, "workload": w})
        low, high = scaled or (s.scaling.min_replicas, s.scaling.max_replicas)
        autoscaled.append({"name": w.name, "kind": w.kind, "api_version": w.api_version, "min": max(1, low), "max": max(1, low, high),
                           "workload": w})
        if w.replicas >= 2:
            budgets.append({"name": w.name, "selector": sel})

    def route(backends: list[tuple[str, int | None]], mirror: str | None = None, percent: float = 0,
              header: str | None = None, kind: str = "plain") -> None:
        extra["route"] = {"kind": kind, "backends": [{"name": b, "weight": wgt} for b, wgt in backends],
                          "mirror": mirror, "percent": percent, "header": header}
        files.append(("k8s/httproute.yaml.j2", "k8s/httproute.yaml", {}))
        if grpc:
            # gRPC callers split (or mirrored) with the same weights as REST.
            files.append(("k8s/grpcroute.yaml.j2", "k8s/grpcroute.yaml", {}))

    candidate = mode == releases.CANDIDATE
    lay = releases.layout(s)
    if pattern == ServingPattern.realtime and s.target == Target.kubernetes:
        if lay == "argo-rollout":
            # Argo Rollouts owns both versions: its template is the candidate, its stable ReplicaSet
            # keeps serving until the analysis promotes; applying the template starts the canary.
            main = candidate_wl("stable", replicas)
            main.kind, main.api_version = "Rollout", "argoproj.io/v1alpha1"
            router = s.rollout.canary.traffic_router if s.rollout.canary else None
            extra.update(workload=main, canary_steps=s.rollout.canary.steps if s.rollout.canary else [100],
                         analysis_metrics=analysis_metrics(s), argo_router=(router.value if router else "gateway-api"))
            rollout_note = f"canary with Argo Rollouts through {extra['argo_router']}"
            files += [("k8s/rollout.yaml.j2", "k8s/rollout.yaml", {}), ("k8s/analysistemplate.yaml.j2", "k8s/analysistemplate.yaml", {})]
            # Argo adds its pod-template hash to both selectors; each stays {app} in every release.
            serve(main, {"app": name})
            # The Services are stable objects: labelled with the stable version, like every stable object.
            services[-1]["workload"] = labelled = stable_wl("stable", replicas)
            services.append({"name": f"{name}-canary", "selector": {"app": name}, "workload": labelled})
            if extra["argo_router"] == "ingress-nginx":
                files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))  # Argo creates the canary Ingress
            else:
                route([(name, 100), (f"{name}-canary", 0)], kind="argo")
        else:
            workloads.append(main)
            serve(main, None, None, name)
            if lay == "blue-green" and candidate:
                rollout_note = f"blue-green: {live} serves, {ctrack} waits for the switch of the Service selector"
                colour = candidate_wl(ctrack, replicas, comment=f"The {ctrack} track: the candidate, reachable through its "
                                      f"own Service until the Service {name} switches to it.")
                workloads.append(colour)
                serve(colour)
                route([(name, None)])
            elif strategy == Rollout.canary and candidate:
                first = s.rollout.canary.steps[0] if s.rollout.canary else 10
                canary = candidate_wl("canary", share(first), comment="The canary track: the candidate, receiving only "
                                      "the weight the route gives it; its own autoscaler sizes it with that weight.")
                workloads.append(canary)
                serve(canary, scaled=(share(first), s.scaling.max_replicas))
                header = s.rollout.canary.header if s.rollout.canary else "X-Canary"
                if canary_mech == CanaryMechanism.ingress_nginx:
                    rollout_note = "canary with ingress-nginx (retired March 2026)"
                    extra["ingress_canary"] = True
                    files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))
                else:
                    rollout_note = "canary with Gateway API weights"
                    route([(name, 100), (f"{name}-canary", 0)], header=header, kind="split")
            elif strategy == Rollout.shadow and candidate:
                rate = s.rollout.shadow.sample_rate if s.rollout.shadow else 0.1
                percent = round(rate * 100, 2)
                percent = int(percent) if float(percent).is_integer() else percent
                extra["mirror_percent"] = percent
                if shadow_mech == ShadowMechanism.in_process:
                    # The shadow pods answer with the stable model (callers see stable answers) and score
                    # the candidate in-process on every request they get: the route's weight is the sample.
                    extra["stable_model_file"] = f"{name}-stable.onnx"
                    env = {**base_env, "ONNXSERVE_MODEL": f"/models/{name}-stable.onnx", "ONNXSERVE_MODEL_VERSION": stable_version,
                           "ONNXSERVE_SHADOW_MODEL": f"/models/{model_file}", "ONNXSERVE_SHADOW_SAMPLE_RATE": "1"}
                    shadow = candidate_wl("shadow", share(percent), env, comment="The shadow track: the candidate image; answers "
                                          "come from the stable model it ships, the candidate is scored in-process.")
                    rollout_note = "shadow scored in-process on a weighted share of traffic"
                    route([(name, 100 - max(1, int(percent))), (f"{name}-shadow", max(1, int(percent)))], kind="split")
                else:
                    shadow = candidate_wl("shadow", share(percent), comment="The shadow track: the candidate, receiving "
                                          "mirrored copies of requests; its answers are discarded.")
                    if shadow_mech == ShadowMechanism.istio:
                        rollout_note = "shadow by Istio mirroring"
                        files.append(("k8s/virtualservice.yaml.j2", "k8s/virtualservice.yaml", {}))
                    else:
                        rollout_note = "shadow by Gateway API RequestMirror"
                        route([(name, None)], mirror=f"{name}-shadow", percent=max(1, int(percent)), kind="mirror")
                workloads.append(shadow)
                serve(shadow, scaled=(share(percent), s.scaling.max_replicas))
            elif strategy == Rollout.canary and canary_mech == CanaryMechanism.ingress_nginx:
                files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))
            elif strategy == Rollout.shadow and shadow_mech == ShadowMechanism.istio:
                files.append(("k8s/virtualservice.yaml.j2", "k8s/virtualservice.yaml", {}))
            else:
                route([(name, None)])
            files.append(("k8s/deployment.yaml.j2", "k8s/deployment.yaml", {}))
        files.append(("k8s/service.yaml.j2", "k8s/service.yaml", {}))
        if canary_mech == CanaryMechanism.ingress_nginx or extra["argo_router"] == "ingress-nginx":
            warnings.append("ingress-nginx was retired by the Kubernetes project in March 2026 (no more releases or "
                            "security fixes): prefer the Gateway API on new clusters")
            if grpc:
                warnings.append("protocol grpc through ingress-nginx: the Ingress carries REST only; gRPC callers reach "
                                f"the Service {name} directly and are not split (use canary_mechanism gateway-api)")
    elif pattern == ServingPattern.realtime and s.target == Target.serverless:
        # Knative: one Service, one revision per model version, traffic split between named
        # revisions. The template is the candidate revision; traffic keeps 100% on the stable one.
        main = candidate_wl("stable", replicas)
        extra["workload"] = main
        cand_rev = releases.revision_name(name, s.model.version)
        if candidate and s.stable is not None:
            extra["traffic"] = [{"revisionName": releases.revision_name(name, s.stable.version), "percent": 100, "tag": "stable"},
                                {"revisionName": cand_rev, "percent": 0, "tag": "candidate"}]
            if strategy in (Rollout.shadow, Rollout.blue_green):
                warnings.append(f"serverless target: {strategy.value} runs as a Knative revision at 0% reachable on its "
                                "`candidate` tag URL; the switch moves the traffic percent")
        else:
            extra["traffic"] = [{"revisionName": cand_rev, "percent": 100, "tag": "stable"}]
        extra["revision"] = cand_rev
        if lay == "kserve":
            # KServe (serverless mode, on Knative): the predictor is the candidate; canaryTrafficPercent
            # 0 keeps every request on the previously rolled-out revision until the steps raise it.
            extra["canary_percent"] = 0 if candidate else None
            files.append(("k8s/inferenceservice.yaml.j2", "k8s/inferenceservice.yaml", {}))
        else:
            files.append(("k8s/knative-service.yaml.j2", "k8s/knative-service.yaml", {}))
    elif pattern == ServingPattern.event_driven and kube:
        worker = stable_wl("stable", replicas)
        worker.name, worker.component = f"{name}-worker", "worker"
        extra["workload"] = worker
        files.append(("k8s/worker.yaml.j2", "k8s/worker.yaml", {"workload": worker}))
        if candidate:
            # A canary worker in the same consumer group takes its share of messages (one of N consumers).
            canary = candidate_wl("canary", 1)
            canary.name, canary.component = f"{name}-worker-canary", "worker"
            files.append(("k8s/worker.yaml.j2", "k8s/worker-canary.yaml", {"workload": canary}))
        # KEDA, not an HPA: queue lag, not CPU, says when workers are short.
        extra["keda"] = {"min": max(0, s.scaling.min_replicas), "max": max(1, s.scaling.max_replicas),
                         "stream": WORKER_STREAM, "group": WORKER_GROUP, "lag": 4 * s.batching.max_batch_size}
        files.append(("k8s/scaledobject.yaml.j2", "k8s/scaledobject.yaml", {}))
        worker.autoscaled = True  # KEDA's HPA owns the workers' replica count
        if replicas >= 2:
            budgets.append({"name": worker.name, "selector": {"app": name, "track": "stable"}})

    batch_args = ["--batch-size", str(s.batching.max_batch_size)]
    batch_command = ["python", "-m", "onnxserve.batch", "--model", f"/models/{model_file}",
                     "--input", s.batch.input_uri if s.batch else "/data/input",
                     "--output", s.batch.output_uri if s.batch else "/data/output", *batch_args]
    if pattern == ServingPattern.batch:
        # The schedule keeps running the stable version; the manual Job runs the candidate, once,
        # writing beside the stable output so the two can be compared before promotion.
        job_wl = stable_wl("stable", 1)
        job_wl.name, job_wl.component, job_wl.env = f"{name}-batch", "batch", {}
        manual = candidate_wl("canary" if candidate else "stable", 1)
        manual.name, manual.component, manual.env = f"{name}-batch-manual", "batch", {}
        manual_command = list(batch_command)
        if candidate:
            out_at = manual_command.index("--output") + 1
            manual_command[out_at] = manual_command[out_at].rstrip("/") + f"/candidate-{version}"
        # The claim the Job and CronJob mount (beside the manual Job when no k8s/ folder is rendered);
        # none when input and output are both on object storage.
        if s.batch is None or s.batch.volume:
            files.append(("k8s/batch-data.yaml.j2", "k8s/batch-data.yaml" if kube else "batch/data.yaml", {}))
        if kube:
            files.append(("k8s/cronjob.yaml.j2", "k8s/cronjob.yaml", {"job": {"kind": "CronJob", "name": f"{name}-batch", "workload": job_wl,
                                                                               "command": batch_command}}))
        files.append(("k8s/cronjob.yaml.j2", "batch/job.yaml", {"job": {"kind": "Job", "name": f"{name}-batch-manual", "workload": manual,
                                                                         "command": manual_command}}))
        files.append(("batch/prefect_flow.py.j2", "batch/prefect_flow.py", {}))
    if kube:
        files.append(("k8s/serviceaccount.yaml.j2", "k8s/serviceaccount.yaml", {}))
        if autoscaled and not s.scaling.scale_to_zero:
            files.append(("k8s/hpa.yaml.j2", "k8s/hpa.yaml", {}))
            for h in autoscaled:
                h["workload"].autoscaled = True
        if budgets:
            files.append(("k8s/pdb.yaml.j2", "k8s/pdb.yaml", {}))
        if s.kubernetes.network_policy:
            files.append(("k8s/networkpolicy.yaml.j2", "k8s/networkpolicy.yaml", {}))
        files.append(("monitoring/prometheus.yml.j2", "monitoring/prometheus.yml", {"compose": False}))
        files.append(("monitoring/prometheusrule.yaml.j2", "monitoring/prometheusrule.yaml", {}))
        if pattern in (ServingPattern.realtime, ServingPattern.event_driven):
            # A PodMonitor scrapes each pod once, whatever number of Services select it.
            files.append(("monitoring/podmonitor.yaml.j2", "monitoring/podmonitor.yaml", {}))

    files += [
        ("monitoring/prometheus.yml.j2", "monitoring/prometheus-compose.yml", {"compose": True}),
        ("monitoring/alerts.rules.yml.j2", "monitoring/alerts.rules.yml", {}),
        ("monitoring/alerts.rules_test.yml.j2", "monitoring/alerts.rules_test.yml", {}),
        ("monitoring/grafana-dashboard.json.j2", "monitoring/grafana-dashboard.json", {}),
        ("Dockerfile.j2", "Dockerfile", {"gpu": False, "lock_file": "requirements.lock", "runtime_image": PYTHON_IMAGE}),
        ("dockerignore.j2", ".dockerignore", {}),
        ("compose.yaml.j2", "compose.yaml", {}),
        ("ci/validate.yml.j2", "ci/validate.yml", {}),
    ]
    if gpu:
        files.append(("Dockerfile.j2", "Dockerfile.gpu", {"gpu": True, "lock_file": "requirements-gpu.lock", "runtime_image": CUDA_FOR_ORT["image"]}))

    main_service = {ServingPattern.batch: "batch", ServingPattern.event_driven: "worker"}.get(pattern, "server")
    compose_command: list[str] | None = None
    compose_env: dict[str, str] = dict(base_env)
    if pattern == ServingPattern.batch:
        compose_command = batch_command
    elif pattern == ServingPattern.event_driven:
        compose_command = ["python", "-m", "onnxserve.worker", "--model", f"/models/{model_file}"]
        compose_env = {"ONNXSERVE_WORKER_REDIS_URL": "redis://redis:6379/0",
                       "ONNXSERVE_WORKER_BATCH_SIZE": str(s.batching.max_batch_size),
                       # Prometheus of the compose file scrapes worker:<port>.
                       "ONNXSERVE_WORKER_METRICS_PORT": str(s.serving.port),
                       "ONNXSERVE_WORKER_METRICS_HOST": "0.0.0.0"}
    parent = directory.resolve().parent.name
    bundle_dir = f"{parent}/{directory.resolve().name}" if parent == "deploy" else directory.resolve().name
    context: dict[str, Any] = {
        "s": s, "name": name, "ns": ns, "version": version, "host": s.kubernetes.host,
        "image_ref": image_ref, "port": s.serving.port, "metrics_path": s.monitoring.metrics_path,
        "model_file": model_file, "gpu": gpu, "grpc": grpc, "env": base_env,
        "command": ["python", "-m", "onnxserve"],
        "python_image": PYTHON_IMAGE, "prometheus_image": PROMETHEUS_IMAGE, "redis_image": REDIS_IMAGE,
        "cuda": CUDA_FOR_ORT, "ort_version": "",
        "workloads": workloads, "services": services, "autoscaled": autoscaled, "disruption_budgets": budgets,
        "rollout_note": rollout_note, "startup_seconds": startup_for(s.model.bytes), "prestop_seconds": PRESTOP_SECONDS,
        "grace_seconds": PRESTOP_SECONDS + s.serving.drain_seconds + 10,
        "open_port": pattern == ServingPattern.realtime, "gates": s.rollout.gates,
        "rules": alerting.rules(s), "rule_tests": alerting.tests(s), "compose": False,
        "batch_command": batch_command, "batch_args": batch_args,
        "worker_command": ["python", "-m", "onnxserve.worker", "--model", f"/models/{model_file}"],
        "main_service": main_service, "compose_command": compose_command, "compose_env": compose_env,
        "dockerfile": releases.dockerfile(s), "bundle_dir": bundle_dir, "job": None,
        "release_mode": mode, "stable_image": stable_image, "stable_version": stable_version,
        "scrape_ports": ["http1", "user-port"] if lay in ("knative", "kserve") else ["http"], "revision": None,
        "canary_percent": None,
        **extra,
    }
    return context, Plan(files=files, warnings=warnings)


# --- writing ----------------------------------------------------------------------------------

DESCRIPTIONS = {
    "Dockerfile": "container image (CPU)", "Dockerfile.gpu": "container image (GPU, CUDA runtime base)",
    ".dockerignore": "build context filter", "requirements.lock": "exact pins of the image's Python packages",
    "requirements-gpu.lock": "exact pins for the GPU image", "compose.yaml": "local trial: server + Prometheus",
}


def describe(path: str) -> str:
    if path in DESCRIPTIONS:
        return DESCRIPTIONS[path]
    top = path.split("/", 1)[0]
    return {"k8s": "Kubernetes manifest", "monitoring": "monitoring", "batch": "batch inference", "ci": "CI workflow",
            "server": "reference server source", "model": "model file"}.get(top, "")


def render_into(spec: DeploymentSpec, directory: Path, target: Path) -> tuple[list[str], list[str]]:
    """Render the whole bundle into `target` (an empty folder); returns (files, warnings)."""
    model_path = resolve_model(spec, directory)
    context, plan = build_context(spec, directory, model_path)
    gpu = context["gpu"]
    # The image carries what its entry point needs: Redis for workers, pyarrow for parquet batches.
    extras = {ServingPattern.event_driven: ("worker",), ServingPattern.batch: ("batch",)}.get(
        spec.serving.pattern, ()
    )
    pins = lockfile.closure(lockfile.server_requirements(SERVER_SOURCE, extras))
    context["ort_version"] = pins.get("onnxruntime", "")
    header = (f"# Exact pins of the {spec.name} image, from the environment deploy-model {__version__} measured with.\n"
              "# Installed with pip --no-deps: this file is the whole dependency closure.\n")
    (target / "requirements.lock").write_text(lockfile.lock_text(pins, False, header), encoding="utf-8")
    if gpu:
        (target / "requirements-gpu.lock").write_text(lockfile.lock_text(pins, True, header), encoding="utf-8")
    env = environment()
    for template, out, local in plan.files:
        try:
            text = env.get_template(template).render(**{**context, **local})
        except jinja2.TemplateError as exc:
            raise StageError(f"template {template} failed to render {out}: {exc}") from None
        path = target / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"), encoding="utf-8")
    shutil.copytree(SERVER_SOURCE, target / "server", ignore=SERVER_IGNORE)
    (target / "model").mkdir()
    shutil.copyfile(model_path, target / "model" / context["model_file"])
    if context["stable_model_file"]:
        shutil.copyfile(resolve_stable_model(spec, directory), target / "model" / context["stable_model_file"])
    int8 = edge_model(spec, directory, plan.warnings)
    if int8 is not None:
        # Edge quantizes first: the device gets the INT8 model that passed the agreement check.
        shutil.copyfile(int8, target / "model" / f"{spec.name}.int8.onnx")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    manifest = {
        "generator": f"deploy-model {__version__}",
        "spec_sha256": sha256_file(directory / SPEC_FILE),
        "name": spec.name,
        "version": spec.model.version,
        "image": context["image_ref"],
        "warnings": plan.warnings,
        "files": [{"path": f, "sha256": sha256_file(target / f), "bytes": (target / f).stat().st_size,
                   "what": describe(f)} for f in files],
    }
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return [*files, MANIFEST_FILE], plan.warnings


def _previous_files(directory: Path) -> list[str]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return []
    try:
        data = read_json(path, MANIFEST_FILE)
        return [str(f["path"]) for f in data.get("files", []) if isinstance(f, dict) and "path" in f]
    except (StageError, AttributeError):
        return []


def move_into_place(staging: Path, directory: Path, files: list[str]) -> None:
    """Replace the previous bundle by the new one: owned folders whole, top-level files one by one."""
    for stale in _previous_files(directory):
        if "/" not in stale and stale not in files:
            (directory / stale).unlink(missing_ok=True)
    for folder in OWNED_DIRS:
        old = directory / folder
        if old.exists():
            shutil.rmtree(old)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_FILE):
        entry.replace(directory / entry.name)  # manifest.json last: it vouches for the rest


def run_render(directory: Path, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    directory = Path(directory)
    spec = load_spec(directory)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="deploy-model-render-") as tmp:
            files, warnings = render_into(spec, directory, Path(tmp))
    else:
        staging = Path(tempfile.mkdtemp(prefix=".render-", dir=directory))
        try:
            files, warnings = render_into(spec, directory, staging)
            # Files of the user's (not in manifest.json) are replaced only with --force.
            ownership.refuse_foreign(directory, OWNED_DIRS, files, force)
            move_into_place(staging, directory, files)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for warning in warnings:
        print(f"render: warning: {warning}", flush=True, file=__import__("sys").stderr)
    shown = [f for f in files if not f.startswith(("server/",))]
    return {
        "stage": "render",
        "ok": True,
        "dry_run": dry_run,
        "wrote": [] if dry_run else [str(directory / f) for f in shown],
        "files": files,
        "warnings": warnings,
        "summary": {
            "files": len(files),
            "server_files": len(files) - len(shown),
            "image": f"{spec.kubernetes.image}:{spec.model.version}",
            "warnings": len(warnings),
        },
    }

