"""The plan's payload_logging switch in the bundle: the server's env, the sink's volume or Secret,
and the alert on dropped records (promtool-tested, and shown to catch a broken rule)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.validate import run_validate


def _pod(out: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((out / "k8s" / "deployment.yaml").read_text()) if d]
    return docs[0]["spec"]["template"]["spec"]


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


def test_off_by_default_nothing_is_rendered(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="direct")
    pod = _pod(out)
    assert not any(k.startswith("ONNXSERVE_PAYLOAD_LOG") for k in _env(pod))
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "ModelPayloadLogDropping" not in (out / "monitoring" / "alerts.rules.yml").read_text()


def test_file_sink_gets_a_bounded_volume_and_the_track(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="direct", payload_logging={"enabled": True, "sampling": 0.5, "max_file_mb": 10,
                                                    "backups": 3})
    pod = _pod(out)
    env = _env(pod)
    assert env["ONNXSERVE_PAYLOAD_LOG_SINK"] == "/var/log/payloads"
    assert env["ONNXSERVE_PAYLOAD_LOG_SAMPLING"] == "0.5"
    assert env["ONNXSERVE_PAYLOAD_LOG_MAX_FILE_BYTES"] == str(10 << 20)
    assert env["ONNXSERVE_PAYLOAD_LOG_BACKUPS"] == "3"
    assert env["ONNXSERVE_TRACK"] == "stable"
    volume = next(v for v in pod["volumes"] if v["name"] == "payloads")
    assert volume == {"name": "payloads", "emptyDir": {"sizeLimit": "50Mi"}}  # (3 + 2) x 10 MiB
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "payloads", "mountPath": "/var/log/payloads"} in mounts
    result = run_validate(out)
    assert result["ok"], result


def test_object_storage_sink_takes_its_credentials_from_a_secret(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="direct", payload_logging={"enabled": True, "sink": "s3://logs/mlp",
                                                    "credentials_secret": "payload-s3"})
    pod = _pod(out)
    assert _env(pod)["ONNXSERVE_PAYLOAD_LOG_SINK"] == "s3://logs/mlp"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "payload-s3"}}]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]  # no volume for a remote sink


def test_a_shared_claim_gets_one_folder_per_pod(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="direct", payload_logging={"enabled": True, "volume_claim": "payload-logs"})
    pod = _pod(out)
    env = _env(pod)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    volume = next(v for v in pod["volumes"] if v["name"] == "payloads")
    assert volume["persistentVolumeClaim"] == {"claimName": "payload-logs"}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "payloads")
    assert mount["subPathExpr"] == "$(POD_NAME)"


@pytest.mark.parametrize("bad", [{"sink": "ftp://x"}, {"sampling": 1.5}, {"enabeld": True}])
def test_bad_payload_logging_answers_are_refused(planned_dir: Callable[..., Path], bad: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="payload_logging"):
        planned_dir(payload_logging={"enabled": True, **bad})


def test_dropped_records_alert_passes_promtool_and_catches_a_broken_rule(bundle: Callable[..., Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    out = bundle(rollout="direct", payload_logging={"enabled": True})
    tests = yaml.safe_load((out / "monitoring" / "alerts.rules_test.yml").read_text())
    cases = [t for t in tests["tests"] if t["alert_rule_test"][0]["alertname"] == "ModelPayloadLogDropping"]
    assert [bool(c["alert_rule_test"][0]["exp_alerts"]) for c in cases] == [True, False]
    run = [promtool, "test", "rules", "alerts.rules_test.yml"]
    done = subprocess.run(run, cwd=out / "monitoring", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rules_file = out / "monitoring" / "alerts.rules.yml"
    rules_file.write_text(rules_file.read_text().replace("> 0.01", "> 0.5"))
    broken = subprocess.run(run, cwd=out / "monitoring", capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "ModelPayloadLogDropping" in broken.stdout + broken.stderr
