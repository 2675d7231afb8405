"""Batch that scales out: an Indexed Job over a PersistentVolumeClaim or object storage, valid for
the Kubernetes version it targets (backoffLimitPerIndex from 1.29), credentials from a Secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.validate import run_validate
from deploy_model.common.errors import StageError


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _job_specs(out: Path) -> dict[str, dict[str, Any]]:
    """kind/name -> the Job spec (a CronJob's jobTemplate.spec) of the bundle's batch jobs."""
    found = {}
    for file in ("k8s/cronjob.yaml", "batch/job.yaml"):
        for doc in _docs(out / file):
            spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = spec
    return found


@pytest.mark.parametrize("version", ["1.34", "1.28"])
def test_indexed_job_on_the_volume_validates(bundle: Callable[..., Path], version: str) -> None:
    out = bundle(traffic="batch", latency_sla_ms=5000, batch_parallelism=4, kubernetes_version=version)
    jobs = _job_specs(out)
    assert len(jobs) == 2  # the CronJob and the manual Job share the jobTemplate
    for spec in jobs.values():
        assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
        if version == "1.34":
            assert spec["backoffLimitPerIndex"] == 2 and "backoffLimit" not in spec
        else:  # before 1.29 the per-index limit is off by default: a Job-wide limit instead
            assert "backoffLimitPerIndex" not in spec and spec["backoffLimit"] == 8
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "ONNXSERVE_BATCH_SHARD_COUNT", "value": "4"} in container["env"]
        assert "envFrom" not in container  # no object storage: no credentials
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
        assert pod["volumes"][-1]["persistentVolumeClaim"]["claimName"].endswith("-data")
    claim = _docs(out / "k8s/batch-data.yaml")[0]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes
    result = run_validate(out, strict=True)
    failed = [c for c in result.get("checks", []) if c.get("verdict") == "fail"]
    assert result["ok"], failed


def test_object_storage_urls_and_secret(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="batch", latency_sla_ms=5000, batch_parallelism=3,
                 batch_input="s3://acme-data/scores/in/", batch_output="s3://acme-data/scores/out")
    for name, spec in _job_specs(out).items():
        container = spec["template"]["spec"]["containers"][0]
        command = container["command"]
        assert command[command.index("--input") + 1] == "s3://acme-data/scores/in/"
        assert command[command.index("--output") + 1].startswith("s3://acme-data/scores/out")
        assert container["envFrom"] == [{"secretRef": {"name": "tabular-classifier-storage"}}], name
        assert all(m["name"] != "data" for m in container["volumeMounts"])  # nothing on the volume
        assert all(v["name"] != "data" for v in spec["template"]["spec"]["volumes"])
    assert not (out / "k8s/batch-data.yaml").exists()  # no claim that nothing mounts
    result = run_validate(out, strict=True)
    failed = [c for c in result.get("checks", []) if c.get("verdict") == "fail"]
    assert result["ok"], failed


def test_single_pod_batch_stays_a_plain_job(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="batch", latency_sla_ms=5000)
    for spec in _job_specs(out).values():
        assert "completionMode" not in spec and spec["backoffLimit"] == 2
        assert "env" not in spec["template"]["spec"]["containers"][0]
    assert _docs(out / "k8s/batch-data.yaml")[0]["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("uri", ["ftp://host/x", "/etc/passwd", "s3://Bad_Bucket/x", "/data/../etc", "s3://b/x y"])
def test_batch_uris_off_the_volume_or_unknown_schemes_are_refused(planned_dir: Callable[..., Path], uri: str) -> None:
    with pytest.raises(StageError, match="batch_input"):
        planned_dir(traffic="batch", latency_sla_ms=5000, batch_input=uri)
