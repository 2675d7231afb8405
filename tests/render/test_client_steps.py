"""The report's rollout plan names the plugin's own client verbs (cluster, apply, smoke --service,
rollout advance/promote/rollback) next to the kubectl lines, only where the rollout driver steps the
release, and every verb and flag it prints is one the CLI really has."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer

from deploy_model.cli.main import app
from deploy_model.plan.specfile import load_spec
from deploy_model.report.client_steps import CLIENT_VERBS
from deploy_model.report.rollout_commands import rollout_steps
from deploy_model.report.writer import run_report


def cli() -> Any:
    """The CLI's command tree, built when asked (cli_cluster adds its verbs when its import finishes).
    Groups are recognised by their `commands` (typer may carry its own click classes)."""
    import deploy_model.cli.cluster  # noqa: F401

    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def client_lines(directory: Path) -> list[str]:
    steps = rollout_steps(load_spec(directory), str(directory), "svc")
    found = [s for s in steps if "plugin's client" in s["title"]]
    assert len(found) == 1, [s["title"] for s in steps]
    return [c for c in found[0]["commands"] if c.startswith("deploy-model ")]


def assert_real_cli(line: str) -> None:
    """Each `deploy-model ...` command (before any `#`, split at `&&`) names a real command and real options."""
    for part in line.split("#", 1)[0].split("&&"):
        words = shlex.split(part)
        assert words[0] == "deploy-model"
        top = cli()
        command = top
        rest = words[1:]
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            command, rest = command.commands[rest[0]], rest[1:]
        assert command is not top and not hasattr(command, "commands"), f"not a command: {part!r}"
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        flags = {w for w in rest if w.startswith("--")}
        assert flags <= known, f"{part!r}: {flags - known} are not options of {command.name}"


def test_canary_names_every_client_verb_and_they_exist(bundle: Callable[..., Path], stable_answers: dict) -> None:
    out = bundle(rollout="canary", canary_mechanism="gateway-api", **stable_answers)
    lines = client_lines(out)
    text = "\n".join(lines)
    for expected in (f"deploy-model cluster --out {out}", f"deploy-model apply --out {out} --dry-run",
                     f"deploy-model apply --out {out}", f"deploy-model smoke --out {out} --service -",
                     f"deploy-model rollout advance --out {out} --watch", f"deploy-model rollout promote --out {out} --promoted {out}-promoted",
                     f"deploy-model rollout rollback --out {out}"):
        assert expected in text
    assert "holds on no data, rolls back by itself on a failed gate" in text and "deploy-model.dev/release" in text
    for line in lines:
        assert_real_cli(line)
    # The verbs the module declares are the CLI's.
    top = cli()
    for group, verb in CLIENT_VERBS:
        parent = top.commands[group] if group else top
        assert verb in parent.commands, f"{group} {verb}"
    # And the report prints them in its rollout plan.
    run_report(out)
    report = (out / "DEPLOYMENT.md").read_text()
    assert f"deploy-model rollout advance --out {out} --watch" in report and f"deploy-model apply --out {out} --dry-run" in report


@pytest.mark.parametrize("answers", [
    {"rollout": "blue-green"},
    {"rollout": "canary", "canary_mechanism": "ingress-nginx"},
])
def test_other_client_driven_strategies(bundle: Callable[..., Path], stable_answers: dict, answers: dict) -> None:
    lines = client_lines(bundle(**answers, **stable_answers))
    assert any(" rollout advance " in line for line in lines)


@pytest.mark.parametrize("answers", [
    {"rollout": "canary", "canary_mechanism": "argo-rollouts"},  # Argo steps its own canary
    {"rollout": "shadow", "shadow_mechanism": "istio"},  # no gated steps for the driver
])
def test_no_rollout_verbs_where_the_driver_refuses(bundle: Callable[..., Path], stable_answers: dict, answers: dict) -> None:
    lines = client_lines(bundle(**answers, **stable_answers))
    assert any(line.startswith("deploy-model apply ") for line in lines)
    assert not any(" rollout " in line for line in lines)


def test_first_release_has_apply_but_no_rollout(bundle: Callable[..., Path]) -> None:
    lines = client_lines(bundle(rollout="canary", canary_mechanism="gateway-api"))
    assert any(line.startswith("deploy-model apply ") for line in lines)
    assert not any(" rollout " in line for line in lines)
