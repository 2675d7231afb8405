"""The rollout checklist and rollback procedure of the report, as exact commands per strategy.

Each step is a dict: `title` (the checklist line), `commands` (shell lines), optional `gates`
(name, PromQL, pass condition). Every bundle describes two versions (releases.py): the stable one
serving now and the candidate. Applying the whole `k8s/` folder is always safe: stable objects
keep the stable version, candidate objects start at no traffic. Promotion is a re-plan with the
candidate as stable (`plan --previous` on the same directory), so labels, env and image agree.

The PromQL gates compare the candidate with the stable version by the `track` label the pods
carry (Knative revisions: by `version`), and never pass on silence: every ratio is empty unless
the candidate served enough requests, and the traffic gate says so.
"""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.client_steps import client_step

TRACK_LABEL = "track"
WINDOW = "5m"


# --- PromQL gates (shared with the Argo Rollouts AnalysisTemplate) ---------------------------


def _sel(spec: Any, track: str, extra: str = "") -> str:
    """Pods of one side: `track="canary"`, or `version="2.0.0"` for a side given as version=..."""
    key, _, value = track.partition("=") if track.startswith("version=") else (TRACK_LABEL, "", track)
    parts = [f'namespace="{spec.kubernetes.namespace}"', f'app="{spec.name}"', f'{key}="{value}"']
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def request_rate(spec: Any, track: str, extra: str = "") -> str:
    return f"sum(rate(model_requests_total{_sel(spec, track, extra)}[{WINDOW}]))"


def error_ratio(spec: Any, track: str) -> str:
    """5xx / all; no 5xx series yet (all healthy) reads 0, not "no data"."""
    return f"(({request_rate(spec, track, 'status=~' + chr(34) + '5..' + chr(34))} or vector(0)) / clamp_min({request_rate(spec, track)}, 1e-9))"


def p95(spec: Any, track: str) -> str:
    return (f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket"
            f"{_sel(spec, track)}[{WINDOW}])))")


def enough(spec: Any, track: str) -> str:
    """Appended to a gate: the result is empty (no data: wait) below the minimum request rate."""
    return f"and on() ({request_rate(spec, track)} >= {spec.rollout.gates.min_request_rate:g})"


def traffic_gate(spec: Any, track: str) -> dict[str, str]:
    g = spec.rollout.gates
    return {"name": "traffic", "promql": f"{request_rate(spec, track)} or vector(0)",
            "passes": f">= {g.min_request_rate:g} req/s; below it the other gates are empty (no data): wait, never promote"}


def absolute_gates(spec: Any, track: str) -> list[dict[str, str]]:
    """After a switch there is nothing left to compare with: the SLO itself is the gate."""
    return [
        traffic_gate(spec, track),
        {"name": "error rate", "promql": f"{error_ratio(spec, track)} {enough(spec, track)}",
         "passes": f"<= {spec.slo.max_error_ratio:g}"},
        {"name": "p95 latency", "promql": f"({p95(spec, track)}) {enough(spec, track)}",
         "passes": f"<= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
    ]


def gates(spec: Any, new_track: str = "canary", base_track: str = "stable") -> list[dict[str, str]]:
    g = spec.rollout.gates
    floor = spec.slo.max_error_ratio / g.max_error_rate_ratio
    return [
        traffic_gate(spec, new_track),
        {"name": "error rate", "promql": f"({error_ratio(spec, new_track)} / clamp_min({error_ratio(spec, base_track)}, "
                                          f"{floor:g})) {enough(spec, new_track)}",
         "passes": f"<= {g.max_error_rate_ratio:g} (the candidate fails at most {g.max_error_rate_ratio:g}x as often as stable; "
                   f"a stable error rate under {floor:.2%} counts as that floor)"},
        {"name": "p95 latency", "promql": f"(({p95(spec, new_track)}) / ({p95(spec, base_track)})) {enough(spec, new_track)}",
         "passes": f"<= {g.max_p95_latency_ratio:g}, and the candidate's p95 alone <= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
    ]


def shadow_gates(spec: Any) -> list[dict[str, str]]:
    """Mirrored shadows are compared like a canary; in-process ones on the server's shadow metrics."""
    g = spec.rollout.gates
    if spec.rollout.shadow and spec.rollout.shadow.mechanism.value != "in-process":
        # Mirrored traffic: the shadow track's answers are discarded, its errors and latency are not.
        return gates(spec, "shadow")
    sel = _sel(spec, "shadow")
    scored = _sel(spec, "shadow", 'outcome="scored"')
    scored_rate = f"sum(rate(model_shadow_samples_total{scored}[{WINDOW}]))"
    guard = f"and on() ({scored_rate} >= {g.min_request_rate:g})"
    return [
        {"name": "shadow samples", "promql": f"{scored_rate} or vector(0)",
         "passes": f">= {g.min_request_rate:g} scored rows/s; below it the other gates are empty (no data): wait"},
        {"name": "shadow agreement",
         "promql": f"(sum(rate(model_shadow_agreed_samples_total{sel}[{WINDOW}])) / clamp_min({scored_rate}, 1e-9)) {guard}",
         "passes": f">= {g.min_shadow_agreement:g}"},
        {"name": "shadow errors",
         "promql": f'sum(rate(model_shadow_samples_total{_sel(spec, "shadow", chr(111) + "utcome=" + chr(34) + "error" + chr(34))}[{WINDOW}])) or vector(0)',
         "passes": "= 0"},
        {"name": "shadow latency p95",
         "promql": (f"(histogram_quantile(0.95, sum by (le) (rate(model_shadow_latency_seconds_bucket{sel}[{WINDOW}]))) / "
                    f"histogram_quantile(0.95, sum by (le) (rate(model_inference_time_seconds_bucket{sel}[{WINDOW}])))) {guard}"),
         "passes": f"<= {g.max_p95_latency_ratio:g}x the stable model's inference p95 in the same pods"},
    ]


# --- helpers ---------------------------------------------------------------------------------


def _argo(spec: Any) -> bool:
    return releases.layout(spec) == "argo-rollout"


def _knative(spec: Any) -> bool:
    """Serverless layouts: a Knative Service, or a KServe InferenceService (Knative underneath)."""
    return releases.layout(spec) in ("knative", "kserve")


def _kserve(spec: Any) -> bool:
    return releases.layout(spec) == "kserve"


def _serverless_object(spec: Any) -> str:
    return f"inferenceservice/{spec.name}" if _kserve(spec) else f"ksvc/{spec.name}"


def _kubectl(context: str, ns: str) -> str:
    return f"kubectl --context {context} -n {ns}"


def _replan(d: str, note: str = "") -> list[str]:
    """Promotion: the candidate planned again with this directory as the previous one becomes stable."""
    return [f"deploy-model plan --out {d} --previous {d} --answers ANSWERS.yaml   # this deployment's answers; "
            f"{note or 'the candidate becomes stable'}",
            f"deploy-model render --out {d} && deploy-model validate --out {d}"]


def build_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    """Build the Dockerfile the manifests use and push it with the tag they pull (GPU: Dockerfile.gpu, :<v>-gpu)."""
    image = releases.candidate_image(spec)
    dockerfile = releases.dockerfile(spec)
    # Also after a promotion: the same Dockerfile and tag, so a rebuild is a no-op and a direct release needs it.
    return [{"title": f"Build and push the image the manifests pull ({dockerfile} -> {image})", "commands": [
        f"docker build -f {d}/{dockerfile} -t {image} {d}",
        f"docker push {image}"]}]


def _release_step(spec: Any, d: str) -> dict[str, Any]:
    mode = releases.mode(spec)
    strategy = spec.rollout.strategy.value
    if mode == releases.FIRST:
        title = (f"Release 1 of {spec.name}: {spec.model.version} is the first version (nothing to compare with), "
                 "so it is deployed directly" + (f"; the {strategy} rollout starts with the next release" if strategy != "direct" else ""))
        commands = ["# the next release: profile the new model in its own directory and plan it against this one",
                    f"deploy-model inspect NEW_MODEL.onnx --out {d}-next",
                    f"deploy-model plan --out {d}-next --previous {d} --answers ANSWERS.yaml   # this deployment's answers",
                    f"deploy-model render --out {d}-next && deploy-model validate --out {d}-next && deploy-model report --out {d}-next"]
        return {"title": title, "commands": commands}
    stable = spec.stable
    if mode == releases.PROMOTED:
        return {"title": f"Release of {spec.model.version} to the stable objects (image {stable.image}): a direct rolling "
                         "update, or the promotion of the candidate planned before (its candidate objects go)", "commands": []}
    return {"title": f"Release of {spec.model.version} (candidate) replacing {stable.version} (stable, image {stable.image}) "
                     f"by {strategy}: applying k8s/ at any step leaves {stable.version} serving", "commands": []}


def _common_start(spec: Any, d: str, service: str) -> list[dict[str, Any]]:
    ns = spec.kubernetes.namespace
    port = spec.serving.port
    staging = _kubectl("staging", ns)
    return [*build_steps(spec, d),
        {"title": "Deploy to staging (monitoring first, then the workloads)", "commands": [
            f"kubectl --context staging create namespace {ns} --dry-run=client -o yaml | kubectl --context staging apply -f -",
            f"{staging} apply -f {d}/monitoring/podmonitor.yaml -f {d}/monitoring/prometheusrule.yaml",
            f"{staging} apply -f {d}/k8s/",
            (f"kubectl argo rollouts --context staging -n {ns} promote {spec.name} --full && "
             f"kubectl argo rollouts --context staging -n {ns} status {spec.name} --timeout 10m" if _argo(spec)
             else f"{staging} wait {_serverless_object(spec)} --for=condition=Ready --timeout=10m" if _knative(spec)
             else f"{staging} rollout status deployment/{releases.workload_name(spec.name, releases.candidate_track(spec))} --timeout=10m")]},
        {"title": f"Run the smoke tests against {spec.model.version} in staging (Service {_tested_service(spec, service)})", "commands": [
            f"{staging} port-forward svc/{_tested_service(spec, service)} 8000:{port} &",
            f"deploy-model smoke --out {d} --url http://127.0.0.1:8000",
            f"deploy-model loadtest --out {d} --url http://127.0.0.1:8000 --concurrency 1,4,16 --seconds 10",
            "kill %1"]},
        {"title": "Production: monitoring objects first, so every gate below has its series before traffic moves",
         "commands": [f"{_kubectl('production', ns)} apply -f {d}/monitoring/podmonitor.yaml -f {d}/monitoring/prometheusrule.yaml"]},
    ]


def _tested_service(spec: Any, service: str) -> str:
    """The Service whose pods run the candidate (the main one on a first release or a promotion)."""
    track = releases.candidate_track(spec)
    if releases.mode(spec) != releases.CANDIDATE or _argo(spec) or _knative(spec) or track == "stable":
        return service
    if track == "shadow" and spec.rollout.shadow and spec.rollout.shadow.mechanism.value == "in-process":
        return service  # its shadow pods answer with the stable model; the candidate is scored, not served
    return releases.workload_name(spec.name, track)


def _weight_commands(spec: Any, weight: int, prod: str) -> list[str]:
    """Set the candidate's share on every route of the bundle (REST and gRPC alike)."""
    name = spec.name
    mech = spec.rollout.canary.mechanism.value if spec.rollout.canary else "gateway-api"
    if mech == "ingress-nginx":
        return [f"{prod} annotate ingress {name}-canary nginx.ingress.kubernetes.io/canary-weight='{weight}' --overwrite"]
    # Gateway API routes: backendRefs[0] is stable, backendRefs[1] is the candidate.
    patch = (f'[{{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":{100 - weight}}},'
             f'{{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":{weight}}}]')
    lines = [f"{prod} patch httproute {name} --type=json -p '{patch}'"]
    if spec.serving.protocol.value == "grpc":
        lines.append(f"{prod} patch grpcroute {name}-grpc --type=json -p '{patch}'")
    return lines


def _knative_weight(spec: Any, weight: int, prod: str) -> str:
    if _kserve(spec):
        # KServe splits between the latest revision (the candidate) and the last rolled-out one.
        return (f"{prod} patch inferenceservice {spec.name} --type=merge "
                f"-p '{{\"spec\":{{\"predictor\":{{\"canaryTrafficPercent\":{weight}}}}}}}'")
    patch = (f'[{{"op":"replace","path":"/spec/traffic/0/percent","value":{100 - weight}}},'
             f'{{"op":"replace","path":"/spec/traffic/1/percent","value":{weight}}}]')
    return f"{prod} patch ksvc {spec.name} --type=json -p '{patch}'"


def migration_steps(spec: Any, d: str, prod: str) -> list[dict[str, Any]]:
    """The previous bundle ran the stable version in another layout: switch without downtime."""
    old = releases.migration(spec)
    if old is None:
        return []
    name, new = spec.name, releases.layout(spec)
    live = releases.live_track(spec)
    workload = releases.workload_name(name, live)
    steps: list[dict[str, Any]] = []
    if new == "knative" or old == "knative":
        return [{"title": f"Layout change {old} -> {new}: Knative and plain workloads are different entry points; run both "
                          "and move DNS to the new one, then delete the old objects (no in-place switch)", "commands": []}]
    if new == "argo-rollout":
        return [{"title": f"Layout change {old} -> Argo Rollout: a Rollout's first revision is deployed at once, so create "
                          "it at the stable version first, then release the candidate through it", "commands": [
            f"deploy-model inspect STABLE_MODEL.onnx --out {d}-migrate && deploy-model plan --out {d}-migrate "
            f"--previous {d}-migrate --answers ANSWERS.yaml --set stable_version={spec.stable.version}",
            f"deploy-model render --out {d}-migrate && {prod} apply -f {d}-migrate/k8s/",
            f"kubectl argo rollouts --context production -n {spec.kubernetes.namespace} status {name} --timeout 15m",
            f"{prod} delete deployment -l app={name},app.kubernetes.io/managed-by=deploy-model --ignore-not-found"]}]
    steps.append({"title": f"Layout change {old} -> {new}: start the stable workload {workload} first (same version, its own "
                           "constant selector), wait until it is ready, only then apply the Services and routes", "commands": [
        f"{prod} apply -f {d}/k8s/deployment.yaml",
        f"{prod} rollout status deployment/{workload} --timeout=15m"]})
    leftovers = {"argo-rollout": f"{prod} delete rollout {name} && {prod} delete analysistemplate {name}-canary-gates",
                 "blue-green": f"{prod} delete " + " ".join(f"{kind}/{name}-{colour}" for colour in ("blue", "green")
                                                             for kind in ("deployment", "service", "hpa")) + " --ignore-not-found",
                 "deployment": f"{prod} delete deployment {name} --ignore-not-found   # the old stable Deployment, once traffic left it"}
    steps.append({"title": "After the steps below switched traffic: remove the workloads of the old layout", "commands": [
        leftovers.get(old, f"# remove the {old} objects of the previous bundle")]})
    return steps


# --- the rollout -----------------------------------------------------------------------------


def rollout_steps(spec: Any, directory: Any, service: str) -> list[dict[str, Any]]:
    name = spec.name
    ns = spec.kubernetes.namespace
    d = str(directory)
    # The plugin's own client verbs (cluster, apply, smoke --service, rollout ...) beside the kubectl lines.
    client = [step] if (step := client_step(spec, d)) else []
    if spec.serving.pattern.value != "realtime":
        return [*_non_realtime_steps(spec, d), *client]
    mode = releases.mode(spec)
    strategy = releases.effective_strategy(spec)
    pause = spec.rollout.canary.pause_minutes if spec.rollout.canary else 60
    prod = _kubectl("production", ns)
    steps = [_release_step(spec, d), *_common_start(spec, d, service)]
    migrate = migration_steps(spec, d, prod)
    steps += migrate[:1]
    ctrack = releases.candidate_track(spec)

    if _knative(spec):
        steps += _knative_steps(spec, d, prod, mode)
    elif _argo(spec):
        argo = f"kubectl argo rollouts --context production -n {ns}"
        weights = spec.rollout.canary.steps if spec.rollout.canary else [100]
        steps.append({"title": ("Apply the bundle: the Rollout's template is the candidate, Argo starts the canary and sets "
                                f"the weights on the {'Ingress' if spec.rollout.canary.traffic_router and spec.rollout.canary.traffic_router.value == 'ingress-nginx' else 'HTTPRoute'}"
                                if mode == releases.CANDIDATE else "Apply the bundle: Argo deploys it at once (no stable revision to compare with)"),
                      "commands": [f"{prod} apply -f {d}/k8s/", f"{argo} get rollout {name} --watch"]})
        if mode == releases.CANDIDATE:
            for weight in weights:
                if weight >= 100:
                    steps.append({"title": "Full rollout (100%): Argo promotes after the last analysis passes", "commands": [
                        f"{argo} status {name} --timeout 15m"]})
                    break
                steps.append({
                    "title": (f"Canary at {weight}%: Argo holds it {pause} min while the AnalysisTemplate {name}-canary-gates "
                              "checks these gates; a failed gate aborts, too little traffic pauses for a person"),
                    "gates": gates(spec),
                    "commands": [f"{argo} get rollout {name}",
                                 f"{argo} promote {name}   # only after a pause for too little traffic, once you checked the gates"]})
            steps.append({"title": "Record the promotion: re-plan with the candidate as stable (the Rollout is unchanged by it)",
                          "commands": _replan(d)})
    elif mode != releases.CANDIDATE:
        steps.append({"title": "Roll out to production (rolling update of the stable workload)", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{releases.workload_name(name, releases.live_track(spec))} --timeout=15m"]})
        if mode == releases.PROMOTED:
            steps.append({"title": "Remove the previous plan's candidate objects (the re-rendered bundle no longer has them)",
                          "commands": _cleanup(spec, prod)})
        steps.append({"title": "Watch for 60 min", "gates": absolute_gates(spec, releases.live_track(spec)), "commands": []})
    elif strategy == "canary":
        cname = f"{name}-canary"
        steps.append({"title": "Apply the bundle: the stable Deployment is unchanged, the canary starts at weight 0", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{cname} --timeout=10m"]})
        weights = spec.rollout.canary.steps if spec.rollout.canary else [100]
        for weight in weights:
            if weight >= 100:
                break
            steps.append({"title": f"Size the canary for {weight}% (its autoscaler's floor), then send it {weight}% of traffic",
                          "commands": [_hpa_floor(cname, max(1, -(-spec.scaling.replicas * weight // 100)), prod),
                                       f"{prod} rollout status deployment/{cname} --timeout=10m",
                                       *_weight_commands(spec, weight, prod)]})
            steps.append({"title": f"Watch for {pause} min; every gate must pass before the next step", "gates": gates(spec),
                          "commands": []})
        steps.append({"title": "Promote: all traffic to the canary, then re-plan with the candidate as stable and roll the "
                               "stable Deployment to it while the canary serves", "commands": [
            _hpa_floor(cname, spec.scaling.replicas, prod),
            f"{prod} rollout status deployment/{cname} --timeout=10m",
            *_weight_commands(spec, 100, prod),
            *_replan(d),
            f"{prod} apply -f {d}/k8s/deployment.yaml && {prod} rollout status deployment/{name} --timeout=15m",
            f"{prod} apply -f {d}/k8s/   # the route back on the stable Service, which runs {spec.model.version} now",
            *_cleanup(spec, prod, "canary")]})
    elif strategy == "blue-green":
        live = releases.live_track(spec)
        steps.append({"title": f"Apply the bundle: {live} keeps serving, {ctrack} starts with the candidate (no traffic yet)", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{name}-{ctrack} --timeout=10m"]})
        steps.append({"title": f"Smoke-test {ctrack} through its own service", "commands": [
            f"{prod} port-forward svc/{name}-{ctrack} 8001:{spec.serving.port} &",
            f"deploy-model smoke --out {d} --url http://127.0.0.1:8001", "kill %1"]})
        steps.append({"title": f"Switch all traffic to {ctrack}", "commands": [_selector_patch(spec, service, ctrack, prod)]})
        steps.append({"title": f"Watch {ctrack} for 60 min with {live} kept warm ({live} takes no traffic now: the SLO is the gate)",
                      "gates": absolute_gates(spec, ctrack), "commands": []})
        promote = [*_replan(d), f"{prod} apply -f {d}/k8s/"]
        if live == "stable":
            # The first blue-green release started from the plain stable Deployment: no colour reuses it.
            promote.append(f"{prod} delete deployment/{name} hpa/{name} --ignore-not-found   # once {ctrack} has served a while")
        steps.append({"title": f"Promote: re-plan with the candidate as stable (the bundle's Service then selects {ctrack}, as "
                               f"patched; {live} stays for an instant rollback until the next release reuses it)", "commands": promote})
    elif strategy == "shadow":
        steps.append({"title": "Apply the bundle: the stable Deployment is unchanged; the shadow track gets the candidate", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{name}-shadow --timeout=10m"]})
        steps.append({"title": "Watch the shadow comparison for a day of real traffic", "gates": shadow_gates(spec), "commands": []})
        steps.append({"title": "Promote the candidate: re-plan it as stable and apply (or re-plan it as a canary first)",
                      "commands": [*_replan(d), f"{prod} apply -f {d}/k8s/",
                                   f"{prod} rollout status deployment/{name} --timeout=15m", *_cleanup(spec, prod, "shadow")]})
    steps += migrate[1:]
    return [*steps, *client]


def _hpa_floor(workload: str, replicas: int, prod: str) -> str:
    """The canary's own HPA keeps at least this many replicas (a plain `scale` would be undone by it)."""
    return f"{prod} patch hpa {workload} -p '{{\"spec\":{{\"minReplicas\":{replicas}}}}}'"


def _selector_patch(spec: Any, service: str, track: str, prod: str) -> str:
    return (f"{prod} patch service {service} -p "
            f"'{{\"spec\":{{\"selector\":{{\"app\":\"{spec.name}\",\"{TRACK_LABEL}\":\"{track}\"}}}}}}'")


def _cleanup(spec: Any, prod: str, track: str | None = None) -> list[str]:
    """The candidate objects a promotion leaves behind (kubectl apply never deletes)."""
    name = spec.name
    if releases.layout(spec) == "blue-green":
        return []
    return [f"{prod} delete deployment,service,hpa,pdb -l app={name},track={t} --ignore-not-found"
            for t in ([track] if track else ["canary", "shadow"])]


def _knative_steps(spec: Any, d: str, prod: str, mode: str) -> list[dict[str, Any]]:
    what = ("Apply the InferenceService: the candidate revision is created with canaryTrafficPercent 0, the rolled-out "
            "revision keeps 100%") if _kserve(spec) else ("Apply the Knative Service: the candidate revision is created at 0% "
                                                          "(its `candidate` tag URL reaches it), the stable revision keeps 100%")
    steps: list[dict[str, Any]] = [{"title": what
                                             if mode == releases.CANDIDATE else f"Apply {_serverless_object(spec)} (one revision, 100%)",
                                    "commands": [f"{prod} apply -f {d}/k8s/",
                                                 f"{prod} wait {_serverless_object(spec)} --for=condition=Ready --timeout=10m"]}]
    if mode != releases.CANDIDATE:
        steps.append({"title": "Watch for 60 min", "gates": absolute_gates(spec, f"version={spec.model.version}"), "commands": []})
        return steps
    new, base = f"version={spec.model.version}", f"version={spec.stable.version}"
    weights = spec.rollout.canary.steps if spec.rollout.canary else [10, 50, 100]
    for weight in weights:
        if weight >= 100:
            break
        steps.append({"title": f"Send {weight}% of requests to the candidate revision", "commands": [_knative_weight(spec, weight, prod)]})
        steps.append({"title": "Watch; every gate must pass before the next step (scale to zero between bursts is normal)",
                      "gates": gates(spec, new, base), "commands": []})
    steps.append({"title": "Promote: re-plan with the candidate as stable and apply (its revision takes 100% and the stable tag)",
                  "commands": [*_replan(d), f"{prod} apply -f {d}/k8s/"]})
    return steps


def _edge_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    """Edge: the model ships to devices; waves of devices replace traffic weights."""
    home = f"/opt/{spec.name}"
    model = f"{home}/model/{spec.name}.onnx"
    return [
        {"title": "Check the device model against the original (quantization.json: size, speed, agreement)", "commands": [
            f"cat {d}/quantization.json"]},
        {"title": "Install on one test device (DEVICE is its address)", "commands": [
            f"ssh DEVICE mkdir -p {home}",
            f"scp -r {d}/model {d}/server {d}/requirements.lock DEVICE:{home}/",
            f"ssh DEVICE 'python3 -m venv {home}/venv && {home}/venv/bin/pip install -r {home}/requirements.lock {home}/server'"]},
        {"title": "Run it on the device and smoke-test it from there", "commands": [
            f"ssh DEVICE '{home}/venv/bin/python -m onnxserve --model {model} --device cpu --port 8000' &",
            "ssh -L 8000:127.0.0.1:8000 DEVICE -N &",
            f"deploy-model smoke --out {d} --url http://127.0.0.1:8000",
            "kill %1 %2"]},
        {"title": "Roll out to the fleet in waves (10%, 50%, 100% of devices) with your fleet manager; "
                  "check /health model_version and the error count on every wave before the next", "commands": []},
    ]


def _non_realtime_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    if spec.serving.pattern.value == "edge":
        return _edge_steps(spec, d)
    ns = spec.kubernetes.namespace
    name = spec.name
    prod = _kubectl("production", ns)
    mode = releases.mode(spec)
    steps = [_release_step(spec, d), *build_steps(spec, d),
             {"title": "Deploy to staging and run one job by hand", "commands": [
                 f"kubectl --context staging -n {ns} apply -f {d}/monitoring/prometheusrule.yaml -f {d}/k8s/",
                 f"kubectl --context staging -n {ns} get all -l app={name}"]}]
    if spec.serving.pattern.value == "batch":
        if mode == releases.CANDIDATE:
            steps += [
                {"title": f"The schedule keeps running {spec.stable.version}; run the candidate once by hand, writing beside "
                          "the stable output, and compare", "commands": [
                    f"{prod} apply -f {d}/k8s/ -f {d}/batch/job.yaml",
                    f"{prod} wait job/{name}-batch-manual --for=condition=complete --timeout=6h"]},
                {"title": "Promote: re-plan with the candidate as stable; the CronJob runs it from the next schedule", "commands": [
                    *_replan(d), f"{prod} apply -f {d}/k8s/"]}]
        else:
            steps.append({"title": "Deploy to production", "commands": [f"{prod} apply -f {d}/k8s/"]})
    else:
        steps.append({"title": "Deploy to production (monitoring first)", "commands": [
            f"{prod} apply -f {d}/monitoring/podmonitor.yaml -f {d}/monitoring/prometheusrule.yaml",
            f"{prod} apply -f {d}/k8s/"]})
        if mode == releases.CANDIDATE:
            steps.append({"title": f"A canary worker ({name}-worker-canary, the candidate) consumes its share of the stream "
                                   "beside the stable workers; compare their failure and latency metrics", "commands": [
                f"{prod} rollout status deployment/{name}-worker-canary --timeout=10m"]})
            steps.append({"title": "Promote: re-plan with the candidate as stable, apply, remove the canary worker", "commands": [
                *_replan(d), f"{prod} apply -f {d}/k8s/",
                f"{prod} delete deployment {name}-worker-canary --ignore-not-found"]})
    steps.append({"title": "Watch the first scheduled runs / consumers", "commands": [f"{prod} get jobs,pods -l app={name} --watch"]})
    return steps


# --- the rollback ----------------------------------------------------------------------------


def rollback_steps(spec: Any, service: str) -> list[dict[str, Any]]:
    name = spec.name
    ns = spec.kubernetes.namespace
    prod = _kubectl("production", ns)
    if spec.serving.pattern.value == "edge":
        home = f"/opt/{name}"
        return [
            {"title": "Stop the wave: no further devices get the new model", "commands": []},
            {"title": "Put the previous release's model back on the devices of the wave, then restart the server "
                      "the way the device supervises it", "commands": [
                f"scp -r PREVIOUS_BUNDLE/model DEVICE:{home}/   # PREVIOUS_BUNDLE: the deployment directory of the last good release"]},
            {"title": "Verify the old version is serving on each device", "commands": [
                "ssh DEVICE 'curl -s http://127.0.0.1:8000/health'   # model_version must be the previous one"]},
        ]
    mode = releases.mode(spec)
    strategy = releases.effective_strategy(spec)
    steps: list[dict[str, Any]] = []
    realtime = spec.serving.pattern.value == "realtime"
    previous = "PREVIOUS_DIR"  # the deployment directory of the last good release
    if mode == releases.CANDIDATE and realtime:
        stable = spec.stable.version
        if _knative(spec):
            steps.append({"title": f"All requests back to the stable revision ({stable})", "commands": [_knative_weight(spec, 0, prod)]})
        elif _argo(spec):
            argo = f"kubectl argo rollouts --context production -n {ns}"
            steps.append({"title": "Abort the rollout (all traffic back to the stable ReplicaSet at once), then put the "
                                   "previous template back so Argo does not retry", "commands": [
                f"{argo} abort {name}",
                f"{argo} undo {name}   # or: {prod} apply -f {previous}/k8s/rollout.yaml"]})
        elif strategy == "canary":
            steps.append({"title": f"Send all traffic back to stable ({stable}, never changed)",
                          "commands": _weight_commands(spec, 0, prod)})
            steps.append({"title": "Scale the canary down", "commands": [f"{prod} scale deployment/{name}-canary --replicas=0"]})
        elif strategy == "blue-green":
            live = releases.live_track(spec)
            steps.append({"title": f"Point the service back at {live} ({stable}, kept warm)",
                          "commands": [_selector_patch(spec, service, live, prod)]})
        elif strategy == "shadow":
            in_process = spec.rollout.shadow and spec.rollout.shadow.mechanism.value == "in-process"
            # In-process shadow pods take a weighted share of real requests: weight 0 before they stop.
            steps.append({"title": f"Stop the shadow (callers only ever got {stable}'s answers)", "commands": [
                *(_weight_commands(spec, 0, prod) if in_process else []),
                f"{prod} scale deployment/{name}-shadow --replicas=0"]})
    elif mode == releases.CANDIDATE:
        steps.append({"title": f"Stop the candidate ({spec.stable.version} never stopped)", "commands": [
            f"{prod} delete deployment {name}-worker-canary --ignore-not-found" if spec.serving.pattern.value == "event-driven"
            else f"{prod} delete job {name}-batch-manual --ignore-not-found"]})
    else:
        steps.append({"title": "Roll back to the previous release: apply its bundle (its stable objects run the previous "
                               "version, so labels, env and image agree)", "commands": [
            f"{prod} apply -f {previous}/k8s/   # {previous}: the deployment directory of the last good release"]})
        if realtime and not _argo(spec) and not _knative(spec):
            workload = releases.workload_name(name, releases.live_track(spec))
            steps.append({"title": "Or revert the Deployment to its previous revision (no directory at hand)", "commands": [
                f"{prod} rollout history deployment/{workload}",
                f"{prod} rollout undo deployment/{workload}",
                f"{prod} rollout status deployment/{workload} --timeout=10m"]})
    if realtime:
        steps.append({"title": "Verify the old version is serving", "commands": [
            f"{prod} port-forward svc/{service} 8000:{spec.serving.port} &",
            "curl -s http://127.0.0.1:8000/health   # model_version must be the previous one",
            "kill %1"],
            "gates": [{"name": "version served", "promql": f'count by (version) (model_version_info{{namespace="{ns}", app="{name}"}})',
                       "passes": "only the previous version"}]})
    steps.append({"title": "Investigate the failure", "commands": [
        f"{prod} logs -l app={name} --all-containers --prefix --since=2h > rollback-{name}.log",
        f"{prod} get events --sort-by=.lastTimestamp | tail -n 50"]})
    return steps
