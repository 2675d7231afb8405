"""What a real API server showed of `rollout` and `apply`, against the FAKE one (fake_kube.py): the canary's
floor follows its weight, a rolled-back candidate stays at 0 when its bundle is re-applied, cleanup names the
retired track's PodDisruptionBudgets, advance's outcomes have their own exit codes and --json `outcome`, the API
server's warnings (and an unverified TLS connection) are said once, and the wording of switches and dry runs."""

from __future__ import annotations

import datetime
import json
import math
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cli.main import main
from deploy_model.cluster import rollout_advance
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.gates import Verdict
from deploy_model.cluster.kubeclient import load
from deploy_model.cluster.release import load_release
from deploy_model.cluster.release_state import ANNOTATION
from deploy_model.cluster.rollout import run_rollback
from deploy_model.plan.planner import run_plan
from deploy_model.plan.specfile import load_spec
from deploy_model.report.rollout_commands import rollout_steps
from deploy_model.report.rollout_release import migration_steps

CLI = [sys.executable, "-m", "deploy_model"]
NAME = "tabular-classifier"
NS = "ml-serving"
NOWHERE = "http://127.0.0.1:9"  # no Prometheus listens there


def applied(planned_dir: Path, fake: FakeKube, tmp_path: Path, **answers: Any) -> tuple[Path, Path]:
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                 "stable_version": "0.9.0", **answers})
    run_render(planned_dir)
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(planned_dir, kc, None, timeout_s=10)
    return planned_dir, kc


def advance(capsys: pytest.CaptureFixture[str], out: Path, kc: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the --json document, stderr) of `rollout advance`, run in this process."""
    capsys.readouterr()
    code = main(["rollout", "advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE,
                 "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def verdict(action: str, reason: str, silent: bool = False) -> Any:
    return lambda *args, **kwargs: Verdict(action, reason, silent=silent)


def state(fake: FakeKube, kind: str = "HTTPRoute") -> dict[str, Any]:
    return json.loads(fake.find(kind, NAME, NS)["metadata"]["annotations"][ANNOTATION])


def test_canary_floor_follows_its_weight_then_passed(fake: FakeKube, planned_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out, kc = applied(planned_dir, fake, tmp_path, min_replicas=4)
    stable = fake.find("HorizontalPodAutoscaler", NAME, NS)["spec"]["minReplicas"]
    assert stable == 4
    monkeypatch.setattr(rollout_advance, "evaluate", verdict("pass", "every gate passed"))
    steps = load_release(out, load(kc), None, None).steps
    assert steps[-1] == 100
    for weight in steps:
        code, doc, err = advance(capsys, out, kc)
        assert (code, doc["outcome"], doc["release"]["weight"]) == (0, "advanced", weight), err
        want = stable if weight == 100 else max(1, math.ceil(weight * stable / 100))
        canary = fake.find("Deployment", f"{NAME}-canary", NS)
        hpa = fake.find("HorizontalPodAutoscaler", f"{NAME}-canary", NS)
        assert canary["spec"]["replicas"] >= want and (hpa is None or hpa["spec"]["minReplicas"] >= want), weight
        if weight == 100:
            assert canary["spec"]["replicas"] == stable and (hpa is None or hpa["spec"]["minReplicas"] == stable)
    code, doc, _ = advance(capsys, out, kc)
    assert (code, doc["outcome"], doc["action"]) == (0, "passed", "passed")


def test_advance_outcomes_have_their_own_exit_codes(fake: FakeKube, planned_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    code, doc, _ = advance(capsys, out, kc)
    assert (code, doc["outcome"]) == (0, "advanced")
    code, doc, _ = advance(capsys, out, kc, "--resolution", "3600")  # too early to judge: held, nothing changes
    assert (code, doc["outcome"], doc["action"]) == (0, "held", "hold")
    code, doc, _ = advance(capsys, out, kc, "--resolution", "0.1")  # a step needs Prometheus: none answers
    assert (code, doc["outcome"], doc["ok"]) == (1, "refused", False) and "did not answer" in doc["error"]
    monkeypatch.setattr(rollout_advance, "evaluate", verdict("hold", "too little traffic", silent=True))
    code, doc, _ = advance(capsys, out, kc, "--watch", "--max-hold", "0", "--interval", "0.1")
    assert (code, doc["outcome"], doc["action"]) == (4, "held", "held")
    monkeypatch.setattr(rollout_advance, "evaluate", verdict("fail", "5xx ratio 0.5 > 0.01"))
    code, doc, _ = advance(capsys, out, kc)
    assert (code, doc["outcome"]) == (3, "rolled-back") and state(fake)["phase"] == "rolled-back"
    code, doc, _ = advance(capsys, out, kc)
    assert (code, doc["outcome"]) == (1, "refused") and "was rolled back" in doc["message"]
    # Without --json the refusal is said once, not once per layer.
    capsys.readouterr()
    assert main(["rollout", "advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE]) == 1
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("was rolled back") == 1
    capsys.readouterr()
    assert main(["rollout", "advance", "--help"]) == 0
    helptext = " ".join(capsys.readouterr().out.split())
    assert "1 refused" in helptext and "3 rolled-back" in helptext and "outcome" in helptext


def test_reapplying_a_rolled_back_candidate_keeps_it_at_zero(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    for answers in ({"rollout": "blue-green", "min_replicas": 2}, {"rollout": "canary"}):
        out, kc = applied(planned_dir, fake, tmp_path, **answers)
        workload = f"{NAME}-green" if answers["rollout"] == "blue-green" else f"{NAME}-canary"
        assert subprocess.run([*CLI, "rollout", "advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus",
                               NOWHERE], capture_output=True, text=True, timeout=120).returncode == 0
        run_rollback(out, kc)
        assert fake.find("Deployment", workload, NS)["spec"]["replicas"] == 0
        again = subprocess.run([*CLI, "apply", "--out", str(out), "--kubeconfig", str(kc), "--timeout", "10"],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert f"Deployment/{workload}: kept at 0 replicas" in again.stderr
        assert fake.find("Deployment", workload, NS)["spec"]["replicas"] == 0
        fake.objects.clear()


def _deletes(commands: list[str]) -> str:
    return "\n".join(c for c in commands if " delete " in c)


def test_cleanup_deletes_the_retired_tracks_disruption_budgets(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    # Blue-green from a plain stable Deployment: promote retires deployment/X, hpa/X and pdb/X.
    out, _ = applied(planned_dir, fake, tmp_path, rollout="blue-green", min_replicas=2)
    spec = load_spec(out)
    line = _deletes([c for s in rollout_steps(spec, "deploy/v2", NAME) for c in s["commands"]])
    retired = [(kind, short) for kind, short in (("Deployment", "deployment"), ("HorizontalPodAutoscaler", "hpa"),
                                                 ("PodDisruptionBudget", "pdb")) if fake.find(kind, NAME, NS)]
    assert ("PodDisruptionBudget", "pdb") in retired  # the bundle applied one: cleanup must name it
    for _, short in retired:
        assert f"{short}/{NAME}" in line
    # Layout changes: the old layout's objects go, PDBs included.
    moved = spec.model_copy(update={"stable": spec.stable.model_copy(update={"layout": "deployment"})})
    line = _deletes([c for s in migration_steps(moved, "deploy/v2", NAME) for c in s["commands"]])
    assert all(f"{short}/{NAME}" in line for short in ("deployment", "hpa", "pdb"))
    run_plan(out, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                         "stable_version": "0.9.0", "min_replicas": 2})
    canary = load_spec(out)
    moved = canary.model_copy(update={"stable": canary.stable.model_copy(update={"layout": "blue-green"})})
    line = _deletes([c for s in migration_steps(moved, "deploy/v2", NAME) for c in s["commands"]])
    assert f"pdb/{NAME}-green" in line and f"pdb/{NAME}-blue" in line and f"hpa/{NAME}-green" in line


def _tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1: the kubeconfig skips its verification."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-apiserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return ctx


def test_server_warnings_and_unverified_tls_are_said_once(planned_dir: Path, tmp_path: Path) -> None:
    fake = FakeKube(addons=("gateway", "prometheus-operator", "metrics")).start(tls=_tls_context(tmp_path))
    try:
        deprecated = 'spec.template.spec.nodeSelector[beta.kubernetes.io/os]: deprecated since v1.14; use "kubernetes.io/os" instead'
        fake.warnings = [deprecated]
        run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                     "stable_version": "0.9.0"})
        run_render(planned_dir)
        kc = fake.kubeconfig(tmp_path / "kc")
        proc = subprocess.run([*CLI, "apply", "--out", str(planned_dir), "--kubeconfig", str(kc), "--timeout", "10"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert len([w for w in fake.writes() if not w[2]]) > 2  # many writes, each answered with the warning
        assert proc.stderr.count(f"Warning: {deprecated}") == 1
        assert "InsecureRequestWarning" not in proc.stderr
        assert proc.stderr.count("TLS certificate verification is off") == 1
    finally:
        fake.stop()


def test_wording_of_switches_and_dry_runs(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path, rollout="blue-green")
    proc = subprocess.run([*CLI, "rollout", "advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus",
                           NOWHERE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "switched traffic to the green track" in proc.stderr and "moved the canary" not in proc.stderr
    dry = run_rollback(out, kc, dry_run=True)
    assert dry["message"].startswith("would send all traffic to stable 0.9.0 and would scale ")
    assert " and scaled " not in dry["message"]
    assert state(fake, "Service")["phase"] == "progressing"  # the dry run changed nothing
