"""The answers to the five questions and the DeploymentSpec that `plan` derives from them.

`Answers` is what a user (or the agent, through `answers.yaml` or flags) says; every field has a
documented default. `DeploymentSpec` is the validated result written to `deployment.yaml` and read
by every later stage (render, serve, smoke, loadtest, report).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from deploy_model.common.errors import StageError, short
from deploy_model.plan import bounds, cron
from deploy_model.plan.ab_test import AbTest, ExperimentSpec
from deploy_model.plan.payload_logging import PayloadLogging

SPEC_API_VERSION = "deploy-model/v1"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# An OCI repository reference without tag: registry/path segments of lowercase alphanumerics.
# The batch job's input/output: on the PersistentVolumeClaim mounted at /data, or object storage.
BATCH_URI = re.compile(r"^(/data(/[A-Za-z0-9._=-]+)*|(s3|gs|az)://[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9._=-]+)*/?)$")
IMAGE_REPO = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
CRON = re.compile(r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$")
K8S_VERSION = re.compile(r"^1\.(\d+)(\.\d+)?$")


class Target(str, Enum):
    kubernetes = "kubernetes"
    serverless = "serverless"
    edge = "edge"
    compose = "compose"


class Traffic(str, Enum):
    realtime = "realtime"
    batch = "batch"
    streaming = "streaming"


class Rollout(str, Enum):
    direct = "direct"
    canary = "canary"
    shadow = "shadow"
    blue_green = "blue-green"
    ab = "ab"  # A/B test: a fixed split for the experiment's length


class Protocol(str, Enum):
    rest = "rest"
    grpc = "grpc"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class CanaryMechanism(str, Enum):
    gateway_api = "gateway-api"
    ingress_nginx = "ingress-nginx"
    argo_rollouts = "argo-rollouts"


class ShadowMechanism(str, Enum):
    in_process = "in-process"
    istio = "istio"
    gateway_api = "gateway-api"


class ArgoTrafficRouter(str, Enum):
    gateway_api = "gateway-api"
    ingress_nginx = "ingress-nginx"


class ServerlessMechanism(str, Enum):
    knative = "knative"
    kserve = "kserve"


class ServingPattern(str, Enum):
    realtime = "realtime"  # REST/gRPC server, the request waits for the answer
    batch = "batch"  # scheduled Job/CronJob over files
    event_driven = "event-driven"  # message queue + workers
    edge = "edge"  # the model runs on the device, quantized first


def _label(value: str | None, field: str) -> str | None:
    if value is None:
        return value
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{field} {short(value)} is not a DNS-1123 label: expected at most 63 characters of "
            "lowercase letters, digits and '-', starting and ending with a letter or digit"
        )
    return value


class Answers(BaseModel):
    """What the user answered. Unknown keys are refused so a typo never passes silently."""

    # allow_inf_nan=False: `.inf` and `.nan` are refused like any other impossible number.
    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False)

    name: str | None = Field(None, description="deployment name (DNS-1123 label); default: from the model file name")
    namespace: str = Field("ml-serving", description="Kubernetes namespace")
    # The five questions of the original command.
    target: Target = Field(Target.kubernetes, description="serving target: kubernetes, serverless, edge, compose")
    traffic: Traffic = Field(Traffic.realtime, description="traffic pattern: realtime, batch, streaming")
    requests_per_second: float = Field(50.0, ge=0, description="expected peak requests per second")
    latency_sla_ms: float = Field(100.0, gt=0, description="p95 latency objective in milliseconds")
    rollout: Rollout = Field(Rollout.canary, description="rollout: direct, canary, shadow, blue-green, ab (A/B test)")
    ab_test: AbTest = Field(default_factory=AbTest, description="rollout ab: {metric, mde, baseline|stdev, split, ...}")
    # Details of the chosen answers.
    canary_weight: int = Field(10, ge=1, le=100, description="first canary step, percent of traffic")
    canary_mechanism: CanaryMechanism = Field(CanaryMechanism.gateway_api, description="how canary traffic is split")
    argo_traffic_router: ArgoTrafficRouter = Field(
        ArgoTrafficRouter.gateway_api, description="argo-rollouts only: the router whose weights Argo sets (gateway-api, ingress-nginx)")
    shadow_mechanism: ShadowMechanism = Field(ShadowMechanism.in_process, description="how shadow traffic is mirrored")
    shadow_model: str | None = Field(None, description="path of the candidate model scored in shadow")
    shadow_sample_rate: float = Field(0.1, gt=0, le=1, description="fraction of requests scored by the shadow")
    protocol: Protocol = Field(Protocol.rest, description="rest, or grpc for internal low-latency callers")
    device: Device = Field(Device.auto, description="auto, cpu, cuda, tensorrt")
    allow_cpu_fallback: bool = Field(False, description="start on CPU when the requested GPU is absent")
    host: str = Field("model.example.com", description="public host name of the endpoint")
    # The Gateway the HTTPRoute attaches to (its parentRef): one the cluster already runs.
    gateway: str = Field("ml-gateway", description="Gateway the HTTPRoute attaches to (Gateway API routes only)")
    gateway_namespace: str = Field("gateway-system", description="namespace of that Gateway")
    image: str | None = Field(None, description="container image repository; default registry.example.com/<name>")
    kubernetes_version: str = Field("1.34", description="Kubernetes version the manifests target")
    min_replicas: int | None = Field(None, ge=0, le=1000)
    max_replicas: int | None = Field(None, ge=1, le=1000)
    max_batch_size: int | None = Field(None, ge=1, le=4096)
    max_batch_delay_ms: float | None = Field(None, ge=0, le=1000)
    batch_schedule: str = Field("0 2 * * *", description="cron schedule for batch jobs")
    # Batch that scales out: an Indexed Job of this many pods, pod i scoring shard i of N.
    batch_parallelism: int = Field(1, ge=1, le=1000, description="pods a batch run is spread over (an Indexed Job)")
    batch_input: str = Field("/data/input", description="batch input: a path on the data volume (/data/...) or s3://, gs://, az:// URL")
    batch_output: str = Field("/data/output", description="batch output: a path on the data volume (/data/...) or s3://, gs://, az:// URL")
    batch_credentials_secret: str | None = Field(
        None, description="Secret whose keys become the batch pod's env (object-storage credentials); default <name>-storage")
    network_policy: bool = Field(True, description="render a NetworkPolicy")
    quantize: bool | None = Field(None, description="quantize to INT8 first; default: yes for edge")
    version: str | None = Field(
        None, description="the candidate's version (its image tag); default: the model's metadata (model_version), "
        "made <version>-<sha256[:12]> when it would equal the stable version of a different model")
    # The version serving now (what the candidate replaces); `plan --previous DIR` fills these
    # from the previous deployment directory. None of them: a first release.
    stable_version: str | None = Field(None, description="model version serving now; absent: first release")
    stable_image: str | None = Field(None, description="image reference serving now, with its tag; default: image:stable_version")
    stable_sha256: str | None = Field(None, description="sha256 of the model serving now")
    stable_model: str | None = Field(None, description="path of the model serving now (in-process shadow ships it beside the candidate)")
    stable_track: str | None = Field(None, description="track the Service selects now: stable, blue or green (blue-green alternates)")
    serverless_mechanism: ServerlessMechanism = Field(
        ServerlessMechanism.knative, description="serverless target: knative (a Knative Service) or kserve (an InferenceService)")
    payload_logging: PayloadLogging = Field(default_factory=PayloadLogging, description="payload log: {enabled, sampling, sink, ...}")
    drift_reference: str | None = Field(None, description="drift-reference.json from `deploy-model drift-reference` (training data): shipped in the image")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _label(value, "name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _label(value, "namespace") or value

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        # Gateway names are DNS-1123 subdomains, the shape of a host name.
        if not HOSTNAME.match(value):
            raise ValueError(f"gateway {short(value)} is not a Kubernetes object name (lowercase letters, digits, '-', '.')")
        return value

    @field_validator("gateway_namespace")
    @classmethod
    def _gateway_namespace(cls, value: str) -> str:
        return _label(value, "gateway_namespace") or value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not HOSTNAME.match(value):
            raise ValueError(f"host {short(value)} is not a lowercase DNS host name such as model.example.com")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REPO.match(value):
            raise ValueError(
                f"image {short(value)} is not an image repository such as registry.example.com/team/model "
                "(lowercase, no tag: the tag is the model version)"
            )
        return value

    @field_validator("batch_input", "batch_output")
    @classmethod
    def _batch_uri(cls, value: str, info: ValidationInfo) -> str:
        if not BATCH_URI.match(value) or "/../" in f"{value}/":
            raise ValueError(
                f"{info.field_name} {short(value)} is not a path on the data volume (/data/...) or an "
                "object-storage URL (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix)")
        return value

    @field_validator("batch_credentials_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _label(value, "batch_credentials_secret")

    @field_validator("batch_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return cron.validate(value)  # fields, ranges and characters (no newline, `$(`, quotes)

    @field_validator(*bounds.ANSWER_BOUNDS)
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return bounds.check(str(info.field_name), value)  # the bound and why it is there

    @field_validator("kubernetes_version")
    @classmethod
    def _k8s(cls, value: Any) -> str:
        text = str(value)
        match = K8S_VERSION.match(text)
        if not match or not 25 <= int(match.group(1)) <= 37:
            raise ValueError(f"kubernetes_version {short(text)} is not a version from 1.25 to 1.37 such as 1.34")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> Answers:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


# --- The spec written to deployment.yaml ----------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TensorSpec(Strict):
    name: str
    dtype: str  # numpy dtype name, e.g. float32
    shape: list[int | str | None]  # int: fixed; str: symbolic; None: unknown


class ModelRef(Strict):
    name: str
    path: str
    format: str
    sha256: str
    bytes: int
    version: str
    opset: int | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_batch: bool
    parameters: int


class Serving(Strict):
    pattern: ServingPattern
    protocol: Protocol
    port: int = 8000
    grpc_port: int = 8001
    device: Device
    allow_cpu_fallback: bool = False
    drain_seconds: int = 20
    request_timeout_ms: int = 10000
    # Server processes per pod (ONNXSERVE_WORKERS), chosen by the plan from the pod's CPUs.
    workers: int = 1


class Batching(Strict):
    enabled: bool
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int


class Resources(Strict):
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    gpu: int = 0


class Scaling(Strict):
    replicas: int
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int
    scale_to_zero: bool = False
    estimated_rps_per_replica: float | None = None


class CanarySpec(Strict):
    mechanism: CanaryMechanism
    traffic_router: ArgoTrafficRouter | None = None  # argo-rollouts: the router Argo sets weights on
    steps: list[int]
    pause_minutes: int
    header: str = "X-Canary"


class ShadowSpec(Strict):
    mechanism: ShadowMechanism
    model_path: str | None
    sample_rate: float


class Gates(Strict):
    """Promotion gates a canary or shadow must pass (ratios against the stable version)."""

    max_error_rate_ratio: float = 2.0
    max_p95_latency_ratio: float = 1.5
    min_shadow_agreement: float = 0.85
    min_request_rate: float = 0.5  # requests/s below which a gate is "no data", not pass or fail


class RolloutSpec(Strict):
    strategy: Rollout
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None
    experiment: ExperimentSpec | None = None  # rollout ab: the A/B test's design
    gates: Gates = Gates()


class Slo(Strict):
    latency_p95_ms: float
    target_rps: float
    availability: float = 99.9
    max_error_ratio: float = 0.01


class Monitoring(Strict):
    metrics_path: str = "/metrics"
    scrape_interval: str = "15s"
    drift_psi_watch: float = 0.1
    drift_psi_act: float = 0.2
    drift_reference: str | None = None  # the training data's reference file; render ships it (bundle/drift_bundle.py)
    min_online_accuracy: float = Field(0.9, gt=0, le=1)  # ModelOnlineAccuracyLow: right answers over 1h of feedback
    # The Prometheus the canary gates query (Argo Rollouts AnalysisTemplate).
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"


class KubernetesSpec(Strict):
    version: str
    namespace: str
    host: str
    image: str
    network_policy: bool
    # Where traffic enters; render writes these into HTTPRoute parentRefs / Ingress class.
    gateway: str = "ml-gateway"
    gateway_namespace: str = "gateway-system"
    ingress_class: str = "nginx"
    serverless_mechanism: ServerlessMechanism = ServerlessMechanism.knative  # target serverless only


class BatchJob(Strict):
    schedule: str
    input_uri: str = "/data/input"
    output_uri: str = "/data/output"
    parallelism: int = 1  # pods of the Indexed Job; each scores 1/N of the shards
    credentials_secret: str | None = None  # Secret mapped into env for object storage
    volume: bool = True  # a PersistentVolumeClaim at /data (input or output on it)


class StableRelease(Strict):
    """The version serving now, which the candidate (`model`) replaces; absent on a first release."""

    version: str
    image: str  # full image reference with its tag, as the stable objects pull it
    sha256: str
    model_path: str | None = None
    bytes: int | None = None
    track: str = "stable"  # the track its pods carry and the main Service selects
    layout: str | None = None  # how the previous bundle ran it (deployment, rollout, blue-green, knative...)


class EdgeSpec(Strict):
    quantize: bool


class Decision(Strict):
    decision: str
    value: Any
    rule: str


class DeploymentSpec(Strict):
    api_version: str = SPEC_API_VERSION
    name: str
    target: Target
    traffic: Traffic
    model: ModelRef
    serving: Serving
    batching: Batching
    resources: Resources
    scaling: Scaling
    rollout: RolloutSpec
    slo: Slo
    monitoring: Monitoring = Monitoring()
    kubernetes: KubernetesSpec
    batch: BatchJob | None = None
    edge: EdgeSpec | None = None
    stable: StableRelease | None = None
    payload_logging: PayloadLogging = PayloadLogging()
    decisions: list[Decision]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _label(value, "name") or value

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        # deployment.yaml may be edited by hand: its numbers and schedule get the answers' checks,
        # all reported at once (before field validation, which would stop at the first field).
        problems = bounds.spec_problems(data)
        batch = data.get("batch") if isinstance(data, dict) else None
        schedule = batch.get("schedule") if isinstance(batch, dict) else getattr(batch, "schedule", None)
        if schedule is not None:
            try:
                cron.validate(schedule)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return data

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def describe_errors(exc: ValidationError, source: str, answers: bool | None = None) -> list[str]:
    """Turn pydantic's errors into one line each: where, what was received, what was expected."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        received = err.get("input")
        if err["type"] == "extra_forbidden":
            is_answers = source.startswith("answers") if answers is None else answers
            fields = ", ".join(Answers.model_fields) if is_answers else "see the spec"
            problems.append(f"{source}: unknown key {short(loc)}; expected one of: {fields}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "enum":
            msg = f"got {short(received)}; expected one of {err['ctx']['expected']}"
        elif err["type"] != "value_error":
            msg = f"{msg} (got {short(received)})"
        problems.append(f"{source}: {loc}: {msg}")
    return problems


def parse_answers(data: Any, source: str = "answers") -> Answers:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StageError(f"{source} must be a mapping of question -> answer, got {type(data).__name__}")
    try:
        return Answers.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, source, answers=True)  # whatever the file is called
        raise StageError(f"{len(problems)} problem(s) in the answers", problems) from None


def parse_spec(data: Any, source: str = "deployment.yaml") -> DeploymentSpec:
    if not isinstance(data, dict):
        raise StageError(f"{source} must be a mapping, got {type(data).__name__}")
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, source)
        raise StageError(f"{source} is not a valid DeploymentSpec", problems) from None


# The Redis Stream and consumer group of the streaming pattern (the worker, its KEDA trigger, the trial).
WORKER_STREAM = "inference:requests"
WORKER_GROUP = "onnx-workers"
