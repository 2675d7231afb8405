"""Release N+1 through `deploy`: its own directory beside release N, planned against it, the candidate carried.

Release 1 of the example goes into the release layout (deploy --release-of ROOT); the model is then
retrained in place (same file, one weight changed, the same metadata) and deployed as release 2,
once as a canary through the layout and once as an in-process shadow with --previous and --out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from measure_helpers import REPO, cli, server_available
from onnx import numpy_helper

from deploy_model.common.errors import StageError
from deploy_model.common.files import sha256_file
from deploy_model.plan import release_layout
from deploy_model.plan.specfile import load_spec

NAME = "tabular-classifier"


def example_bytes() -> tuple[bytes, bytes]:
    """The example tabular model, and the same network retrained: one bias changed, metadata untouched."""
    spec = importlib.util.spec_from_file_location("build_examples", REPO / "examples" / "build_examples.py")
    assert spec and spec.loader
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    proto = builder.tabular_classifier()
    first = proto.SerializeToString()
    bias = next(t for t in proto.graph.initializer if t.name == "b3")
    values = numpy_helper.to_array(bias).copy()
    values[0] += 0.25
    bias.CopyFrom(numpy_helper.from_array(values, "b3"))
    return first, proto.SerializeToString()


def tree(directory: Path) -> dict[str, str]:
    """Every file under `directory` with its sha256 (what "byte-identical" compares)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def answers(path: Path, rollout: str) -> Path:
    path.write_text(yaml.safe_dump({"latency_sla_ms": 50, "requests_per_second": 100, "rollout": rollout,
                                    "namespace": "ml-serving"}))
    return path


def deploy(*args: str | Path) -> None:
    done = cli("deploy", *args, "--concurrency", "1", "--seconds", "0.3", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def deployment_images(directory: Path) -> dict[str, str]:
    found = {}
    for path in sorted((directory / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                found[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Release 1 in the layout, then the retrained model as release 2: a canary (layout) and a shadow (--previous)."""
    reason = server_available()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("releases")
    first, retrained = example_bytes()
    model = work / "tabular_classifier.onnx"
    model.write_bytes(first)
    root = work / "deploy" / NAME
    deploy(model, "--answers", answers(work / "canary.yaml", "canary"), "--release-of", root)
    release1 = root / "releases" / "1.0.0"
    before = tree(release1)
    model.write_bytes(retrained)  # retrained in place: same file name, same metadata, new bytes
    deploy(model, "--answers", work / "canary.yaml", "--release-of", root)
    shadow = work / "shadow-release"
    deploy(model, "--answers", answers(work / "shadow.yaml", "shadow"), "--previous", release1, "--out", shadow)
    release2 = release_layout.release_dir(root, (root / "current").read_text().strip())
    return {"root": root, "model": model, "release1": release1, "before": before, "release2": release2, "shadow": shadow,
            "first_sha": hashlib.sha256(first).hexdigest(), "retrained_sha": hashlib.sha256(retrained).hexdigest()}


@pytest.mark.slow
def test_release_2_is_a_canary_in_its_own_directory_and_release_1_is_untouched(flow: dict[str, Any]) -> None:
    release1, release2 = flow["release1"], flow["release2"]
    assert tree(release1) == flow["before"]  # byte-identical: the rollback target survived release 2
    assert release2.parent == release1.parent and release2 != release1
    one, two = load_spec(release1), load_spec(release2)
    assert one.model.sha256 == flow["first_sha"] and two.model.sha256 == flow["retrained_sha"]
    assert two.name == one.name == NAME
    assert two.model.version != one.model.version and two.model.version == release2.name
    assert two.stable is not None and two.stable.version == one.model.version
    assert two.stable.sha256 == flow["first_sha"]
    images = deployment_images(release2)
    stable_tag, canary_tag = images[NAME].rsplit(":", 1)[1], images[f"{NAME}-canary"].rsplit(":", 1)[1]
    assert stable_tag == one.model.version and canary_tag == two.model.version and stable_tag != canary_tag
    release = next(d for d in two.decisions if d.decision == "release")
    assert "first release" not in release.rule and "by canary" in release.rule
    record = json.loads((release2 / "deploy.json").read_text())
    assert record["ok"] and record["previous"] == str(release1)


@pytest.mark.slow
def test_releases_lists_both_and_the_current_one(flow: dict[str, Any]) -> None:
    done = cli("releases", "--root", flow["root"], "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    versions = [r["version"] for r in listed["releases"]]
    two = flow["release2"].name
    assert versions == ["1.0.0", two]
    assert listed["current"] == two and listed["serving"] == "1.0.0" and listed["candidate"] == two
    assert [r["mode"] for r in listed["releases"]] == ["first", "candidate"]
    assert listed["releases"][1]["strategy"] == "canary" and listed["releases"][1]["stable_version"] == "1.0.0"
    text = cli("releases", "--root", flow["root"])
    assert text.returncode == 0 and f"current {two}" in text.stdout and "serving 1.0.0" in text.stdout
    # The retrained model again: its promotion, in a directory of its own beside release 2's.
    nxt = json.loads(cli("releases", "--root", flow["root"], "--next", flow["model"], "--json").stdout)["next"]
    assert nxt == {"version": two, "out": str(flow["root"] / "releases" / f"{two}-2"), "previous": str(flow["release2"])}


def test_releases_of_a_root_not_there_yet_say_where_release_1_goes(tmp_path: Path) -> None:
    model = tmp_path / "tabular_classifier.onnx"
    model.write_bytes(example_bytes()[0])
    done = cli("releases", "--root", tmp_path / "deploy" / NAME, "--next", model, "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["releases"] == [] and listed["current"] is None
    assert listed["next"] == {"version": "1.0.0", "out": str(tmp_path / "deploy" / NAME / "releases" / "1.0.0"), "previous": None}


@pytest.mark.slow
def test_rollout_verbs_accept_release_2(flow: dict[str, Any], tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "cluster"))
    from fake_kube import FakeKube

    from deploy_model.cluster.apply import run_apply

    fake = FakeKube(addons=("gateway", "prometheus-operator", "metrics")).start()
    try:
        kc = fake.kubeconfig(tmp_path / "kc")
        run_apply(flow["release2"], kc, None, timeout_s=10)
        common = ["--out", str(flow["release2"]), "--kubeconfig", str(kc), "--json"]
        status = cli("rollout", "status", *common)
        assert status.returncode == 0, status.stderr
        said = json.dumps(json.loads(status.stdout))
        assert flow["release2"].name in said and "1.0.0" in said
        advance = cli("rollout", "advance", *common, "--prometheus", "http://127.0.0.1:9", "--dry-run")
        assert advance.returncode == 0, advance.stderr
        assert "would move the canary 0% -> 10%" in advance.stderr
    finally:
        fake.stop()


@pytest.mark.slow
def test_shadow_release_2_ships_serves_and_reports_the_candidate(flow: dict[str, Any]) -> None:
    shadow = flow["shadow"]
    spec = load_spec(shadow)
    candidate, prefix = spec.model.version, flow["retrained_sha"][:12]
    assert spec.stable is not None and spec.stable.version == "1.0.0" and candidate != "1.0.0"
    release = next(d for d in spec.decisions if d.decision == "release")
    assert "first release" not in release.rule and "by shadow" in release.rule
    # The bundle ships both: the stable model answers in the shadow pods, the candidate is scored.
    assert sha256_file(shadow / "model" / f"{NAME}-stable.onnx") == flow["first_sha"]
    assert sha256_file(shadow / "model" / f"{NAME}.onnx") == flow["retrained_sha"]
    manifest = {f["path"]: f["what"] for f in json.loads((shadow / "manifest.json").read_text())["files"]}
    assert f"candidate {candidate}" in manifest[f"model/{NAME}.onnx"]
    assert "stable 1.0.0" in manifest[f"model/{NAME}-stable.onnx"]
    compose = yaml.safe_load((shadow / "compose.yaml").read_text())["services"]["server"]["environment"]
    assert compose["ONNXSERVE_MODEL"] == f"/models/{NAME}-stable.onnx"
    assert compose["ONNXSERVE_SHADOW_MODEL"] == f"/models/{NAME}.onnx"
    # The report names the candidate: version, sha256 prefix, role.
    report = (shadow / "DEPLOYMENT.md").read_text()
    assert f"Release of {candidate} (candidate, sha256 {prefix}: the shadow" in report
    assert "first release" not in report.lower()
    # The local trial ran the same pair: stable answering, the candidate as --shadow-model.
    argv = json.loads((shadow / "server.json").read_text())["command"]
    served = Path(argv[argv.index("--model") + 1])
    scored = Path(argv[argv.index("--shadow-model") + 1])
    assert sha256_file(served) == flow["first_sha"] and sha256_file(scored) == flow["retrained_sha"]
    assert argv[argv.index("--model-version") + 1] == "1.0.0"
    smoke = json.loads((shadow / "smoke.json").read_text())
    assert smoke["passed"] == len(smoke["checks"])


def test_release_of_excludes_out_and_previous(tmp_path: Path) -> None:
    done = cli("deploy", tmp_path / "m.onnx", "--release-of", tmp_path / "root", "--out", tmp_path / "x")
    assert done.returncode == 2 and "--release-of" in done.stderr


def test_layout_picks_the_current_release_and_never_reuses_a_successful_directory(tmp_path: Path) -> None:
    root = tmp_path / NAME
    assert release_layout.current_release(root)[0] is None
    assert release_layout.new_release_dir(root, "1.0.0") == root / "releases" / "1.0.0"

    def release(folder: str, ok: bool | None) -> Path:
        directory = root / "releases" / folder
        directory.mkdir(parents=True)
        (directory / "deployment.yaml").write_text("{}\n")
        (directory / "manifest.json").write_text("{}\n")
        if ok is not None:
            (directory / "deploy.json").write_text(json.dumps({"ok": ok}))
        return directory

    failed = release("2.0.0", False)
    assert release_layout.new_release_dir(root, "2.0.0") == failed  # a run that never became current is redone
    done = release("1.0.0", True)
    os.utime(failed / "manifest.json", (1_000_000, 1_000_000))  # rendered before 1.0.0's
    assert release_layout.new_release_dir(root, "1.0.0") == root / "releases" / "1.0.0-2"
    # No `current` record: the newest rendered release.
    assert release_layout.current_release(root)[0] == done
    release_layout.write_current(root, "2.0.0")
    assert release_layout.current_release(root)[0] == failed
    (root / "current").write_text("9.9.9\n")
    with pytest.raises(StageError, match=r"names release '9\.9\.9'"):
        release_layout.current_release(root)


def test_a_root_from_before_the_layout_is_its_first_release(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "deployment.yaml").write_text("{}\n")
    (root / "manifest.json").write_text("{}\n")
    assert release_layout.release_dirs(root) == [root]
    assert release_layout.current_release(root)[0] == root



@pytest.fixture(scope="module")
def planned_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Release 1 planned and rendered, and the retrained model's profile (no server)."""
    from deploy_model.bundle.render import run_render
    from deploy_model.model.inspection import run_inspect
    from deploy_model.plan.planner import run_plan

    work = tmp_path_factory.mktemp("pair")
    first, retrained = example_bytes()
    model = work / "tabular_classifier.onnx"
    model.write_bytes(first)
    release1 = work / "r1"
    run_inspect(model, release1, runs=1, large_batch=2)
    run_plan(release1, None, {"latency_sla_ms": 50, "requests_per_second": 100})
    run_render(release1)
    model.write_bytes(retrained)
    profile = work / "r2-profile"
    run_inspect(model, profile, runs=1, large_batch=2)
    return {"release1": release1, "profile": profile, "first_sha": hashlib.sha256(first).hexdigest(),
            "retrained_sha": hashlib.sha256(retrained).hexdigest()}


@pytest.mark.parametrize(("answers", "track", "pair"), [
    ({"rollout": "canary"}, "canary", False),
    ({"rollout": "blue-green"}, "green", False),
    ({"rollout": "shadow", "shadow_mechanism": "gateway-api"}, "shadow", False),
    ({"rollout": "shadow", "shadow_mechanism": "in-process"}, "shadow", True),
], ids=["canary", "blue-green", "shadow-mirrored", "shadow-in-process"])
def test_every_strategy_carries_the_candidate(planned_pair: dict[str, Any], tmp_path: Path, answers: dict[str, Any],
                                              track: str, pair: bool) -> None:
    """Bundle, report and local trial of release 2: the candidate's image on its track, named with its sha256."""
    from deploy_model.bundle.render import run_render
    from deploy_model.measure.trial_models import trial_models
    from deploy_model.plan.planner import run_plan
    from deploy_model.report.rollout_release import release_step

    out = tmp_path / "r2"
    shutil.copytree(planned_pair["profile"], out)
    run_plan(out, None, {"latency_sla_ms": 50, "requests_per_second": 100, **answers}, previous=planned_pair["release1"])
    run_render(out)
    spec = load_spec(out)
    assert spec.stable is not None and spec.stable.sha256 == planned_pair["first_sha"]
    images = deployment_images(out)
    assert images[f"{NAME}-{track}"].endswith(f":{spec.model.version}")
    assert images[NAME].endswith(":1.0.0")
    title = release_step(spec, str(out))["title"]
    assert f"Release of {spec.model.version} (candidate, sha256 {planned_pair['retrained_sha'][:12]}: " in title
    assert f"`{NAME}-{track}`" in title
    served = trial_models(spec)
    stable_copy = out / "model" / f"{NAME}-stable.onnx"
    if pair:  # the shadow pods' pair: the stable model answers, the candidate is scored
        assert sha256_file(served.model) == planned_pair["first_sha"] and served.version == "1.0.0"
        assert served.shadow is not None and sha256_file(served.shadow) == planned_pair["retrained_sha"]
        assert sha256_file(stable_copy) == planned_pair["first_sha"]
    else:  # the candidate's pods run it alone: so does the trial
        assert sha256_file(served.model) == planned_pair["retrained_sha"] and served.shadow is None
        assert not stable_copy.exists()
