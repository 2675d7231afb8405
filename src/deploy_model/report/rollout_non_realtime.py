"""The rollout of the patterns without a request path: edge devices in waves, batch jobs, event-driven workers."""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.rollout_kubectl import build_steps, kube, kubectl, replan
from deploy_model.report.rollout_release import monitoring_apply, release_step
from deploy_model.report.shell import sh


def edge_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    """Edge: the model ships to devices; waves of devices replace traffic weights."""
    home = f"/opt/{spec.name}"
    model = f"{home}/model/{spec.name}.onnx"
    return [
        {"title": "Check the device model against the original (quantization.json: size, speed, agreement)", "commands": [
            sh("cat", f"{d}/quantization.json")]},
        {"title": "Install on one test device (DEVICE is its address)", "commands": [
            sh("ssh", "DEVICE", "mkdir", "-p", home),
            sh("scp", "-r", f"{d}/model", f"{d}/server", f"{d}/requirements.lock", f"DEVICE:{home}/"),
            # ssh hands the device's shell one string: it is quoted once for that shell, then once for this one.
            sh("ssh", "DEVICE", f"{sh('python3', '-m', 'venv', f'{home}/venv')} && "
                                f"{sh(f'{home}/venv/bin/pip', 'install', '-r', f'{home}/requirements.lock', f'{home}/server')}")]},
        {"title": "Run it on the device and smoke-test it from there", "commands": [
            f"{sh('ssh', 'DEVICE', sh(f'{home}/venv/bin/python', '-m', 'onnxserve', '--model', model, '--device', 'cpu', '--port', '8000'))} &",
            "ssh -L 8000:127.0.0.1:8000 DEVICE -N &",
            sh("deploy-model", "smoke", "--out", d, "--url", "http://127.0.0.1:8000"),
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
                 kube(kubectl("staging", ns), "apply", "-f", f"{d}/monitoring/prometheusrule.yaml", "-f", f"{d}/k8s/"),
                 kube(kubectl("staging", ns), "get", "all", "-l", f"app={name}")]}]
    if spec.serving.pattern.value == "batch":
        if mode == releases.CANDIDATE:
            steps += [
                {"title": f"The schedule keeps running {spec.stable.version}; run the candidate once by hand, writing beside "
                          "the stable output, and compare", "commands": [
                    kube(prod, "apply", "-f", f"{d}/k8s/", "-f", f"{d}/batch/job.yaml"),
                    kube(prod, "wait", f"job/{releases.manual_job_name(spec)}", "--for=condition=complete", "--timeout=6h")]},
                {"title": "Promote: re-plan with the candidate as stable; the CronJob runs it from the next schedule", "commands": [
                    *replan(d), kube(prod, "apply", "-f", f"{d}/k8s/")]}]
        else:
            steps.append({"title": "Deploy to production", "commands": [kube(prod, "apply", "-f", f"{d}/k8s/")]})
    else:
        steps.append({"title": "Deploy to production (monitoring first)", "commands": [
            kube(prod, *monitoring_apply(d)),
            kube(prod, "apply", "-f", f"{d}/k8s/")]})
        if mode == releases.CANDIDATE:
            steps.append({"title": f"A canary worker ({name}-worker-canary, the candidate) consumes its share of the stream "
                                   "beside the stable workers; compare their failure and latency metrics", "commands": [
                kube(prod, "rollout", "status", f"deployment/{name}-worker-canary", "--timeout=10m")]})
            steps.append({"title": "Promote: re-plan with the candidate as stable, apply, remove the canary worker", "commands": [
                *replan(d), kube(prod, "apply", "-f", f"{d}/k8s/"),
                kube(prod, "delete", "deployment", f"{name}-worker-canary", "--ignore-not-found")]})
    steps.append({"title": "Watch the first scheduled runs / consumers", "commands": [kube(prod, "get", "jobs,pods", "-l", f"app={name}", "--watch")]})
    return steps
