"""A release's identity is its bytes: version, image tag and deployment name across `plan --previous`.

Also where plan's answers come from (flag > --set > answers file > default, --set typed by the
schema) and the rollouts streaming plans refuse.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import typer
import yaml

from deploy_model.bundle.render import run_render
from deploy_model.cli.base import app
from deploy_model.cli.main import main
from deploy_model.common.errors import StageError
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.answer_sources import flag_answer
from deploy_model.plan.planner import run_plan
from deploy_model.plan.specfile import load_spec

NAME = "tabular-classifier"


def retrained(model: Path, out: Path, version: str, weights: str) -> Path:
    """The network saved with model_version `version`; `weights` stands for what training changed (new bytes)."""
    proto = onnx.load(str(model))
    for key, value in (("model_version", version), ("trained_on", weights)):
        props = {p.key: p for p in proto.metadata_props}
        if key in props:
            props[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> dict[str, Path]:
    """Profiles of release 1 and a retrained model with the same metadata version (1.0.0), same file name or renamed."""
    out = {}
    for label, weights, filename in (("r1", "jan", "tabular_classifier.onnx"), ("retrained", "feb", "tabular_classifier.onnx"),
                                     ("renamed", "feb", "m2.onnx")):
        root = tmp_path_factory.mktemp(label)
        model = retrained(tabular_model, root / "model" / filename, "1.0.0", weights)
        run_inspect(model, root / "profile", runs=2, large_batch=2)
        out[label] = root / "profile" / "model-profile.json"
    return out


def plan(profile: Path, out: Path, answers: dict[str, Any], previous: Path | None = None, render: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(profile, out / "model-profile.json")
    run_plan(out, None, answers, previous=previous)
    if render:
        run_render(out)
    return out


def images(directory: Path) -> dict[str, str]:
    """Deployment name -> the image its first container pulls, from the rendered k8s/ folder."""
    found = {}
    for path in sorted((directory / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                found[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


def rule(directory: Path, decision: str) -> str:
    return next(d.rule for d in load_spec(directory).decisions if d.decision == decision)


# --- version and image tag --------------------------------------------------------------------


def test_equal_version_different_bytes_never_share_a_tag(profiles: dict[str, Path], tmp_path: Path) -> None:
    r1 = plan(profiles["r1"], tmp_path / "r1", {})
    r2 = plan(profiles["retrained"], tmp_path / "r2", {}, previous=r1)
    spec = load_spec(r2)
    assert spec.stable is not None and spec.stable.version == "1.0.0"
    assert spec.model.version == f"1.0.0-{spec.model.sha256[:12]}" != spec.stable.version
    why = rule(r2, "version")
    assert spec.stable.sha256[:12] in why and spec.model.sha256[:12] in why and "<version>-<sha256[:12]>" in why
    pulled = images(r2)
    assert pulled[NAME] == images(r1)[NAME] and pulled[NAME].endswith(":1.0.0")
    assert pulled[f"{NAME}-canary"].endswith(f":{spec.model.version}")
    assert pulled[NAME] != pulled[f"{NAME}-canary"], "two models under one image tag: release 2's push overwrites stable's"


def test_explicit_version_equal_to_stable_with_other_bytes_is_refused(profiles: dict[str, Path], tmp_path: Path) -> None:
    r1 = plan(profiles["r1"], tmp_path / "r1", {}, render=False)
    stable_sha = load_spec(r1).model.sha256
    with pytest.raises(StageError) as caught:
        plan(profiles["retrained"], tmp_path / "r2", {"version": "1.0.0"}, previous=r1, render=False)
    candidate_sha = yaml.safe_load((tmp_path / "r2" / "model-profile.json").read_text())["model"]["sha256"]
    message = str(caught.value)
    assert "'1.0.0'" in message and stable_sha[:12] in message and candidate_sha[:12] in message
    assert not (tmp_path / "r2" / "deployment.yaml").exists()


def test_explicit_version_names_the_candidate(profiles: dict[str, Path], tmp_path: Path) -> None:
    r1 = plan(profiles["r1"], tmp_path / "r1", {}, render=False)
    r2 = plan(profiles["retrained"], tmp_path / "r2", {"version": "1.1.0"}, previous=r1)
    assert load_spec(r2).model.version == "1.1.0" and rule(r2, "version") == "answered"
    assert images(r2)[f"{NAME}-canary"].endswith(":1.1.0")


def test_same_bytes_new_version_is_a_promotion_or_no_op(profiles: dict[str, Path], tmp_path: Path) -> None:
    r1 = plan(profiles["r1"], tmp_path / "r1", {}, render=False)
    again = plan(profiles["r1"], tmp_path / "again", {"version": "2.0.0"}, previous=r1)
    spec = load_spec(again)
    assert spec.stable is not None and spec.model.version == spec.stable.version == "1.0.0"
    why = rule(again, "version")
    assert "promotion or a no-op" in why and "2.0.0" in why and "not used" in why
    assert set(images(again)) == {NAME}, "nothing new runs beside stable"


# --- deployment name ------------------------------------------------------------------------


def test_renamed_model_file_keeps_the_deployment_name(profiles: dict[str, Path], tmp_path: Path) -> None:
    r1 = plan(profiles["r1"], tmp_path / "r1", {})
    r2 = plan(profiles["renamed"], tmp_path / "r2", {}, previous=r1)
    spec = load_spec(r2)
    assert spec.name == NAME and "m2" in rule(r2, "name") and "previous release" in rule(r2, "name")
    assert set(images(r2)) == {NAME, f"{NAME}-canary"}
    assert images(r2)[NAME] == images(r1)[NAME], "stable keeps running release 1 in its own objects"
    forked = plan(profiles["renamed"], tmp_path / "fork", {"name": "m2"}, previous=r1, render=False)
    assert load_spec(forked).name == "m2" and "forks" in rule(forked, "name")


# --- where the answers come from --------------------------------------------------------------

PLAN_OPTIONS_NOT_ANSWERS = {"out", "answers", "sets", "previous", "as_json", "dry_run"}
# answer key -> (answers file, --set, flag) values, and where the spec records it.
PRECEDENCE: dict[str, tuple[tuple[str, str, str], Callable[[dict[str, Any]], Any]]] = {
    "name": (("from-file", "from-set", "from-flag"), lambda s: s["name"]),
    "target": (("compose", "serverless", "kubernetes"), lambda s: s["target"]),
    "traffic": (("batch", "streaming", "realtime"), lambda s: s["traffic"]),
    "requests_per_second": (("11", "22", "33"), lambda s: str(int(s["slo"]["target_rps"]))),
    "latency_sla_ms": (("200", "300", "400"), lambda s: str(int(s["slo"]["latency_p95_ms"]))),
    "rollout": (("shadow", "blue-green", "direct"), lambda s: s["rollout"]["strategy"]),
    "canary_weight": (("20", "30", "40"), lambda s: str(s["rollout"]["canary"]["steps"][0])),
    "device": (("cpu", "cuda", "tensorrt"), lambda s: s["serving"]["device"]),
    "stable_version": (("0.1.0", "0.2.0", "0.3.0"), lambda s: s["stable"]["version"]),
    "stable_image": (("r.example.com/m:a", "r.example.com/m:b", "r.example.com/m:c"), lambda s: s["stable"]["image"]),
    "stable_sha256": (("a" * 64, "b" * 64, "c" * 64), lambda s: s["stable"]["sha256"]),
}


def plan_flags() -> dict[str, str]:
    """plan's options that give an answer: answer key -> the option as typed."""
    command = typer.main.get_command(app).commands["plan"]  # the verbs registered by importing cli.main
    flags, others = {}, set()
    for param in command.params:
        key = flag_answer(param.name)
        if key is None:
            others.add(param.name)
        else:
            flags[key] = max(param.opts, key=len)
    assert others == PLAN_OPTIONS_NOT_ANSWERS, "a new plan option: map it to its answer (answer_sources.FLAG_ANSWER)"
    return flags


def cli_plan(directory: Path, *args: str) -> dict[str, Any]:
    (directory / "deployment.yaml").unlink(missing_ok=True)
    code = main(["--out", str(directory), *args], prog_name="plan", verb="plan")
    assert code == 0, f"plan {' '.join(args)} exited {code}"
    return yaml.safe_load((directory / "deployment.yaml").read_text())


def test_every_flag_has_its_case() -> None:
    assert set(plan_flags()) == set(PRECEDENCE)


@pytest.mark.parametrize("key", sorted(PRECEDENCE))
def test_flag_over_set_over_answers_file(key: str, profiles: dict[str, Path], tmp_path: Path) -> None:
    (in_file, in_set, in_flag), read = PRECEDENCE[key]
    shutil.copyfile(profiles["r1"], tmp_path / "model-profile.json")
    base = {"stable_version": "0.0.1"} if key.startswith("stable_") and key != "stable_version" else {}
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({**base, key: yaml.safe_load(in_file)}))
    flag = plan_flags()[key]
    assert read(cli_plan(tmp_path, "--answers", str(answers))) == in_file
    assert read(cli_plan(tmp_path, "--answers", str(answers), "--set", f"{key}={in_set}")) == in_set
    assert read(cli_plan(tmp_path, "--answers", str(answers), "--set", f"{key}={in_set}", flag, in_flag)) == in_flag


def test_set_keeps_a_string_answer_as_typed(profiles: dict[str, Path], tmp_path: Path) -> None:
    shutil.copyfile(profiles["r1"], tmp_path / "model-profile.json")
    assert cli_plan(tmp_path, "--set", "kubernetes_version=1.34")["kubernetes"]["version"] == "1.34"
    assert cli_plan(tmp_path, "--set", "kubernetes_version=1.30")["kubernetes"]["version"] == "1.30"  # not 1.3
    spec = cli_plan(tmp_path, "--set", "version=2.10", "--set", "stable_version=2.0", "--set", "min_replicas=3")
    assert (spec["model"]["version"], spec["stable"]["version"], spec["scaling"]["min_replicas"]) == ("2.10", "2.0", 3)


def test_plan_help_states_the_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"], prog_name="plan", verb="plan")
    text = " ".join(capsys.readouterr().out.split())
    assert "a flag typed on the command line > --set KEY=VALUE > the --answers file > the default" in text


# --- rollouts a streaming plan cannot honour --------------------------------------------------


@pytest.mark.parametrize("answers", [
    {"rollout": "canary"}, {"rollout": "canary", "canary_mechanism": "argo-rollouts"}, {"rollout": "shadow"},
    {"rollout": "shadow", "shadow_mechanism": "gateway-api"}, {"rollout": "blue-green"},
], ids=lambda a: "-".join(a.values()))
def test_streaming_refuses_traffic_splitting(answers: dict[str, Any], profiles: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no route or Service to split") as caught:
        plan(profiles["r1"], tmp_path, {"traffic": "streaming", "latency_sla_ms": 2000, **answers}, render=False)
    assert "expected 'direct'" in " ".join(caught.value.problems)


def test_streaming_refuses_canary_given_by_set(profiles: dict[str, Path], tmp_path: Path) -> None:
    shutil.copyfile(profiles["r1"], tmp_path / "model-profile.json")
    code = main(["--out", str(tmp_path), "--traffic", "streaming", "--latency-sla-ms", "2000", "--set", "rollout=canary"],
                prog_name="plan", verb="plan")
    assert code != 0 and not (tmp_path / "deployment.yaml").exists()


def test_streaming_defaults_to_direct(profiles: dict[str, Path], tmp_path: Path) -> None:
    directory = plan(profiles["r1"], tmp_path, {"traffic": "streaming", "latency_sla_ms": 2000}, render=False)
    assert load_spec(directory).rollout.strategy.value == "direct"
    assert "no route or Service" in rule(directory, "rollout")


def test_set_alone_is_never_dropped_for_keys_with_a_flag(profiles: dict[str, Path], tmp_path: Path) -> None:
    shutil.copyfile(profiles["r1"], tmp_path / "model-profile.json")
    spec = cli_plan(tmp_path, "--set", "rollout=blue-green", "--set", "target=serverless", "--set", "device=cuda")
    assert (spec["rollout"]["strategy"], spec["target"], spec["serving"]["device"]) == ("blue-green", "serverless", "cuda")
