"""The rollout checklist and rollback procedure of the report, as exact commands per strategy.

Each step is a dict: `title` (the checklist line), `commands` (shell lines), optional `gates`
(name, PromQL, pass condition). The PromQL gates compare the new version against the stable one
by the `track` label the rendered manifests put on pods (stable / canary), which the scrape
config keeps as a target label.
"""

from __future__ import annotations

from typing import Any

TRACK_LABEL = "track"
WINDOW = "5m"


def _sel(spec: Any, track: str, extra: str = "") -> str:
    parts = [f'namespace="{spec.kubernetes.namespace}"', f'app="{spec.name}"', f'{TRACK_LABEL}="{track}"']
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def error_ratio(spec: Any, track: str) -> str:
    errors = _sel(spec, track, 'status=~"5.."')
    return (f"sum(rate(model_requests_total{errors}[{WINDOW}])) / "
            f"sum(rate(model_requests_total{_sel(spec, track)}[{WINDOW}]))")


def p95(spec: Any, track: str) -> str:
    return (f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket"
            f"{_sel(spec, track)}[{WINDOW}])))")


def absolute_gates(spec: Any, track: str) -> list[dict[str, str]]:
    """After a switch there is nothing left to compare with: the SLO itself is the gate."""
    return [
        {"name": "error rate", "promql": error_ratio(spec, track), "passes": f"<= {spec.slo.max_error_ratio:g}"},
        {"name": "p95 latency", "promql": p95(spec, track), "passes": f"<= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
    ]


def gates(spec: Any, new_track: str = "canary", base_track: str = "stable") -> list[dict[str, str]]:
    g = spec.rollout.gates
    out = [
        {"name": "error rate", "promql": f"({error_ratio(spec, new_track)}) / clamp_min({error_ratio(spec, base_track)}, "
                                          f"{spec.slo.max_error_ratio / g.max_error_rate_ratio:g})",
         "passes": f"<= {g.max_error_rate_ratio:g} (the new version fails at most {g.max_error_rate_ratio:g}x as often as stable; "
                   f"a stable error rate under {spec.slo.max_error_ratio / g.max_error_rate_ratio:.2%} counts as that floor)"},
        {"name": "p95 latency", "promql": f"({p95(spec, new_track)}) / ({p95(spec, base_track)})",
         "passes": f"<= {g.max_p95_latency_ratio:g}, and the new version's p95 alone <= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
        {"name": "traffic", "promql": f"sum(rate(model_requests_total{_sel(spec, new_track)}[{WINDOW}]))",
         "passes": f">= {g.min_request_rate:g} req/s; below it the gates have no data: wait, do not promote"},
    ]
    return out


def shadow_gates(spec: Any) -> list[dict[str, str]]:
    g = spec.rollout.gates
    if spec.rollout.shadow and spec.rollout.shadow.mechanism.value != "in-process":
        # Mirrored traffic: the shadow track's answers are discarded, its errors and latency are not.
        return gates(spec, "shadow")
    sel = f'{{namespace="{spec.kubernetes.namespace}", app="{spec.name}"}}'
    return [
        {"name": "shadow agreement",
         "promql": f"sum(rate(model_shadow_agreed_samples_total{sel}[{WINDOW}])) / sum(rate(model_shadow_compared_samples_total{sel}[{WINDOW}]))",
         "passes": f">= {g.min_shadow_agreement:g}"},
        {"name": "shadow errors",
         "promql": f'sum(rate(model_shadow_requests_total{{namespace="{spec.kubernetes.namespace}", app="{spec.name}", outcome="error"}}[{WINDOW}]))',
         "passes": "= 0"},
        {"name": "shadow latency p95",
         "promql": f"histogram_quantile(0.95, sum by (le) (rate(model_shadow_latency_seconds_bucket{sel}[{WINDOW}])))",
         "passes": f"<= {g.max_p95_latency_ratio:g}x the primary's p95"},
    ]


def _argo(spec: Any) -> bool:
    return bool(spec.rollout.canary) and spec.rollout.canary.mechanism.value == "argo-rollouts"


def _common_start(spec: Any, directory_name: str, service: str) -> list[dict[str, Any]]:
    ns = spec.kubernetes.namespace
    port = spec.serving.port
    image = f"{spec.kubernetes.image}:{spec.model.version}"
    return [
        {"title": "Build and push the image", "commands": [
            f"docker build -t {image} {directory_name}",
            f"docker push {image}"]},
        {"title": "Deploy to staging", "commands": [
            f"kubectl --context staging create namespace {ns} --dry-run=client -o yaml | kubectl --context staging apply -f -",
            f"kubectl --context staging -n {ns} apply -f {directory_name}/k8s/",
            (f"kubectl argo rollouts --context staging -n {ns} status {spec.name} --timeout 10m" if _argo(spec)
             else f"kubectl --context staging -n {ns} rollout status deployment/{spec.name} --timeout=10m")]},
        {"title": "Run the smoke tests against staging", "commands": [
            f"kubectl --context staging -n {ns} port-forward svc/{service} 8000:{port} &",
            f"deploy-model smoke --out {directory_name} --url http://127.0.0.1:8000",
            f"deploy-model loadtest --out {directory_name} --url http://127.0.0.1:8000 --concurrency 1,4,16 --seconds 10",
            "kill %1"]},
    ]


def rollout_steps(spec: Any, directory: Any, service: str) -> list[dict[str, Any]]:
    name = spec.name
    ns = spec.kubernetes.namespace
    d = str(directory)
    strategy = spec.rollout.strategy.value
    pause = spec.rollout.canary.pause_minutes if spec.rollout.canary else 60
    if spec.serving.pattern.value != "realtime":
        return _non_realtime_steps(spec, d)
    steps = _common_start(spec, d, service)
    prod = f"kubectl --context production -n {ns}"
    if strategy == "canary" and spec.rollout.canary:
        mech = spec.rollout.canary.mechanism.value
        weights = spec.rollout.canary.steps
        if mech == "argo-rollouts":
            argo = f"kubectl argo rollouts --context production -n {ns}"
            steps.append({"title": "Start the canary in production (Argo Rollouts)", "commands": [
                f"{prod} apply -f {d}/k8s/",
                f"{argo} set image {name} server={spec.kubernetes.image}:{spec.model.version}",
                f"{argo} get rollout {name} --watch"]})
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
            return steps
        route = "k8s/ingress.yaml" if mech == "ingress-nginx" else "k8s/httproute.yaml"
        steps.append({"title": "Deploy the canary track beside the running stable one (canary at 0%)", "commands": [
            f"# first release only (nothing runs yet): {prod} apply -f {d}/k8s/",
            f"{prod} apply -f {d}/k8s/ -l track=canary   # only the canary objects: stable keeps its version",
            f"{prod} apply -f {d}/{route}   # the split, canary at weight 0",
            f"{prod} rollout status deployment/{name}-canary --timeout=10m"]})
        for weight in weights:
            cmd = _weight_command(spec, mech, weight, prod)
            if weight >= 100:
                steps.append({"title": "Full rollout (100%): make the new version the stable track", "commands": [
                    f"{prod} set image deployment/{name} server={spec.kubernetes.image}:{spec.model.version}",
                    f"{prod} rollout status deployment/{name} --timeout=15m",
                    _weight_command(spec, mech, 0, prod)]})
                break
            steps.append({"title": f"Send {weight}% of traffic to the canary", "commands": [cmd]})
            steps.append({"title": f"Watch for {pause} min; every gate must pass before the next step", "gates": gates(spec),
                          "commands": []})
        return steps
    if strategy == "shadow":
        steps.append({"title": "Deploy with the candidate scored in shadow (answers still come from the primary)", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{name} --timeout=10m"]})
        steps.append({"title": "Watch the shadow comparison for a day of real traffic", "gates": shadow_gates(spec), "commands": []})
        candidate = spec.rollout.shadow.model_path if spec.rollout.shadow and spec.rollout.shadow.model_path else "CANDIDATE.onnx"
        steps.append({"title": "Promote the candidate: plan it as the model and roll it out as a canary", "commands": [
            f"deploy-model deploy {candidate} --answers ANSWERS.yaml --out {d}-candidate"
            "   # ANSWERS.yaml: this deployment's answers with rollout: canary"]})
        return steps
    if strategy == "blue-green":
        steps.append({"title": "Deploy the green track beside blue (no traffic yet)", "commands": [
            f"{prod} apply -f {d}/k8s/",
            f"{prod} rollout status deployment/{name}-green --timeout=10m"]})
        steps.append({"title": "Smoke-test green through its own service", "commands": [
            f"{prod} port-forward svc/{name}-green 8001:{spec.serving.port} &",
            f"deploy-model smoke --out {d} --url http://127.0.0.1:8001", "kill %1"]})
        steps.append({"title": "Switch all traffic to green", "commands": [
            f"{prod} patch service {service} -p '{{\"spec\":{{\"selector\":{{\"app\":\"{name}\",\"{TRACK_LABEL}\":\"green\"}}}}}}'"]})
        steps.append({"title": "Watch green for 60 min with blue kept warm (blue takes no traffic now: the SLO is the gate)",
                      "gates": absolute_gates(spec, "green"), "commands": []})
        return steps
    steps.append({"title": "Roll out to production (rolling update)", "commands": [
        f"{prod} apply -f {d}/k8s/",
        f"{prod} rollout status deployment/{name} --timeout=15m"]})
    steps.append({"title": "Watch for 60 min", "gates": absolute_gates(spec, "stable"), "commands": []})
    return steps


def _weight_command(spec: Any, mechanism: str, weight: int, prod: str) -> str:
    name = spec.name
    if mechanism == "ingress-nginx":
        return f"{prod} annotate ingress {name}-canary nginx.ingress.kubernetes.io/canary-weight='{weight}' --overwrite"
    # Gateway API HTTPRoute: backendRefs[0] is stable, backendRefs[1] is canary.
    patch = (f'[{{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":{100 - weight}}},'
             f'{{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":{weight}}}]')
    return f"{prod} patch httproute {name} --type=json -p '{patch}'"


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
    image = f"{spec.kubernetes.image}:{spec.model.version}"
    prod = f"kubectl --context production -n {ns}"
    return [
        {"title": "Build and push the image", "commands": [f"docker build -t {image} {d}", f"docker push {image}"]},
        {"title": "Deploy to staging and run one job by hand", "commands": [
            f"kubectl --context staging -n {ns} apply -f {d}/k8s/",
            f"kubectl --context staging -n {ns} get all -l app={spec.name}"]},
        {"title": "Deploy to production", "commands": [f"{prod} apply -f {d}/k8s/"]},
        {"title": "Watch the first scheduled runs / consumers", "commands": [f"{prod} get jobs,pods -l app={spec.name} --watch"]},
    ]


def rollback_steps(spec: Any, service: str) -> list[dict[str, Any]]:
    name = spec.name
    ns = spec.kubernetes.namespace
    prod = f"kubectl --context production -n {ns}"
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
    strategy = spec.rollout.strategy.value
    steps: list[dict[str, Any]] = []
    if spec.serving.pattern.value == "realtime" and strategy == "canary" and spec.rollout.canary:
        mech = spec.rollout.canary.mechanism.value
        if mech == "argo-rollouts":
            steps.append({"title": "Abort the rollout (all traffic back to stable at once)", "commands": [
                f"kubectl argo rollouts --context production -n {ns} abort {name}",
                f"kubectl argo rollouts --context production -n {ns} undo {name}"]})
        else:
            steps.append({"title": "Send all traffic back to stable", "commands": [_weight_command(spec, mech, 0, prod)]})
            steps.append({"title": "Scale the canary down", "commands": [f"{prod} scale deployment/{name}-canary --replicas=0"]})
    elif strategy == "blue-green":
        steps.append({"title": "Point the service back at blue", "commands": [
            f"{prod} patch service {service} -p '{{\"spec\":{{\"selector\":{{\"app\":\"{name}\",\"{TRACK_LABEL}\":\"blue\"}}}}}}'"]})
    if not _argo(spec):
        steps.append({"title": "Revert the Deployment to its previous revision (when the stable track itself was changed)", "commands": [
            f"{prod} rollout history deployment/{name}",
            f"{prod} rollout undo deployment/{name}",
            f"{prod} rollout status deployment/{name} --timeout=10m"]})
    if spec.serving.pattern.value == "realtime":
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
