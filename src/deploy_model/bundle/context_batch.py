"""The batch and streaming patterns: scheduled and manual batch Jobs, queue workers scaled by KEDA."""

from __future__ import annotations

from deploy_model.bundle.context_objects import BundleObjects
from deploy_model.bundle.context_workload import ReleaseWorkloads
from deploy_model.plan import releases
from deploy_model.plan.spec import WORKER_GROUP, WORKER_STREAM, DeploymentSpec


def streaming_workers(objs: BundleObjects, rel: ReleaseWorkloads) -> None:
    """Queue workers on Kubernetes: the stable workers, a canary worker beside them, KEDA scaling both."""
    s, name = rel.spec, rel.spec.name
    worker = rel.stable("stable", s.scaling.replicas)
    worker.name, worker.component = f"{name}-worker", "worker"
    objs.extra["workload"] = worker
    objs.files.append(("k8s/worker.yaml.j2", "k8s/worker.yaml", {"workload": worker}))
    if rel.has_candidate:
        # A canary worker in the same consumer group takes its share of messages (one of N consumers).
        canary = rel.candidate("canary", 1)
        canary.name, canary.component = f"{name}-worker-canary", "worker"
        objs.files.append(("k8s/worker.yaml.j2", "k8s/worker-canary.yaml", {"workload": canary}))
    # KEDA, not an HPA: queue lag, not CPU, says when workers are short.
    objs.extra["keda"] = {"min": max(0, s.scaling.min_replicas), "max": max(1, s.scaling.max_replicas),
                          "stream": WORKER_STREAM, "group": WORKER_GROUP, "lag": 4 * s.batching.max_batch_size}
    objs.files.append(("k8s/scaledobject.yaml.j2", "k8s/scaledobject.yaml", {}))
    worker.autoscaled = True  # KEDA's HPA owns the workers' replica count
    if s.scaling.replicas >= 2:
        objs.budgets.append({"name": worker.name, "selector": {"app": name, "track": "stable"}})


def batch_command(spec: DeploymentSpec, model_file: str) -> tuple[list[str], list[str]]:
    """The batch entry point's command line, and its arguments beyond input and output."""
    s = spec
    batch_args = ["--batch-size", str(s.batching.max_batch_size)]
    command = ["python", "-m", "onnxserve.batch", "--model", f"/models/{model_file}",
               "--input", s.batch.input_uri if s.batch else "/data/input",
               "--output", s.batch.output_uri if s.batch else "/data/output", *batch_args]
    return command, batch_args


def batch_jobs(objs: BundleObjects, rel: ReleaseWorkloads, command: list[str], kube: bool) -> None:
    # The schedule keeps running the stable version; the manual Job runs the candidate, once,
    # writing beside the stable output so the two can be compared before promotion.
    s, name = rel.spec, rel.spec.name
    job_wl = rel.stable("stable", 1)
    job_wl.name, job_wl.component, job_wl.env = f"{name}-batch", "batch", {}
    manual = rel.candidate("canary" if rel.has_candidate else "stable", 1)
    manual.name, manual.component, manual.env = releases.manual_job_name(s), "batch", {}
    manual_command = list(command)
    if rel.has_candidate:
        out_at = manual_command.index("--output") + 1
        manual_command[out_at] = manual_command[out_at].rstrip("/") + f"/candidate-{rel.version}"
    # The claim the Job and CronJob mount (beside the manual Job when no k8s/ folder is rendered);
    # none when input and output are both on object storage.
    if s.batch is None or s.batch.volume:
        objs.files.append(("k8s/batch-data.yaml.j2", "k8s/batch-data.yaml" if kube else "batch/data.yaml", {}))
    if kube:
        objs.files.append(("k8s/cronjob.yaml.j2", "k8s/cronjob.yaml", {"job": {"kind": "CronJob", "name": f"{name}-batch",
                                                                                "workload": job_wl, "command": command}}))
    objs.files.append(("k8s/cronjob.yaml.j2", "batch/job.yaml", {"job": {"kind": "Job", "name": manual.name,
                                                                          "workload": manual, "command": manual_command}}))
    objs.files.append(("batch/prefect_flow.py.j2", "batch/prefect_flow.py", {}))
