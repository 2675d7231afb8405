"""The rollout of the patterns without a request path: edge devices in waves, batch jobs, event-driven workers."""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.rollout_kubectl import build_steps, kubectl, replan
from deploy_model.report.rollout_release import release_step


def edge_steps(spec: Any, d: str) -> list[dict[str, Any]]:
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


def non_realtime_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    if spec.serving.pattern.value == "edge":
        return edge_steps(spec, d)
    ns = spec.kubernetes.namespace
    name = spec.name
    prod = kubectl("production", ns)
    mode = releases.mode(spec)
    steps = [release_step(spec, d), *build_steps(spec, d),
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
                    *replan(d), f"{prod} apply -f {d}/k8s/"]}]
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
                *replan(d), f"{prod} apply -f {d}/k8s/",
                f"{prod} delete deployment {name}-worker-canary --ignore-not-found"]})
    steps.append({"title": "Watch the first scheduled runs / consumers", "commands": [f"{prod} get jobs,pods -l app={name} --watch"]})
    return steps
