"""The report's Experiment section of an ab plan: the design as planned, the labels, the commands to run;
absent from any other plan, whose next steps still suggest an A/B test."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import CliRunner

from deploy_model.cli.main import app
from deploy_model.report.writer import run_report

AB = {"metric": "accuracy", "baseline": 0.9, "mde": 0.02, "split": 25}


def report_of(directory: Path) -> str:
    run_report(directory)
    return (directory / "DEPLOYMENT.md").read_text()


def section(text: str) -> str:
    return text.split("## Experiment\n", 1)[1].split("\n## ", 1)[0]


def test_ab_plan_reports_the_design_and_the_commands(planned: Callable[..., Path]) -> None:
    out = planned(rollout="ab", ab_test=AB, stable_version="0.9.0", requests_per_second=10)
    e = yaml.safe_load((out / "deployment.yaml").read_text())["rollout"]["experiment"]
    text = section(report_of(out))
    assert f"| requests per arm | A {e['n_a']}, B {e['n_b']} (100% of requests logged and labelled) |" in text
    assert f"about {e['duration_hours']:g} h" in text and "at 10 req/s" in text
    assert "| split | 75% A / 25% B, fixed for the experiment's length |" in text
    assert "A: 0.9.0 (track stable); B: 1.0.0 (track canary)" in text
    assert "`request_id,label`" in text, "how labels are attached"
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("deploy-model experiment")]
    assert [c.split()[2] for c in commands] == ["status", "analyze"]
    for command in commands:  # each line parses as the verb's own options (the shell variables aside)
        args = shlex.split(command.replace("$PAYLOAD_LOGS", "logs").replace("$LABELS", "labels.csv"))
        assert args[args.index("--control") + 1] == "0.9.0" and args[args.index("--treatment") + 1] == "1.0.0"
        assert args[args.index("--mde") + 1] == "0.02" and args[args.index("--metric") + 1] == "accuracy"
        shown = CliRunner().invoke(app, [*args[1:3], "--help"], terminal_width=200).output
        assert all(opt in shown for opt in args if opt.startswith("--")), command
    assert "rollout promote" in text and "rollout rollback" in text


def test_other_plans_have_no_experiment_section(planned: Callable[..., Path]) -> None:
    text = report_of(planned(rollout="canary", stable_version="0.9.0"))
    assert "## Experiment\n" not in text and "Add A/B testing (`rollout: ab`" in text


def test_ab_plans_rollout_checklist_runs_the_experiment_not_canary_steps(planned: Callable[..., Path]) -> None:
    from deploy_model.plan.specfile import load_spec
    from deploy_model.report.rollout_commands import rollout_steps

    out = planned(rollout="ab", ab_test=AB, stable_version="0.9.0", requests_per_second=10)
    spec = load_spec(out)
    titles = [step["title"] for step in rollout_steps(spec, out, spec.name)]
    assert any(t.startswith("Size arm B for 25%") for t in titles), titles
    run = next(t for t in titles if t.startswith("Run the experiment for at least"))
    e = spec.rollout.experiment
    assert f"A {e.n_a}, B {e.n_b} requests" in run
    assert any(t.startswith("B better: promote it") for t in titles)
    assert not any(t.startswith("Watch for") for t in titles), "an A/B test is never stepped by gates"
    commands = [c for step in rollout_steps(spec, out, spec.name) for c in step["commands"]]
    assert sum(c.startswith("deploy-model experiment ") for c in commands) == 2
