"""Verbs mostly for the agent that drives /deploy-model: answers, models, trial, summary.

Registered on the same typer app as the stages (cli.py imports this module at its end), kept
apart so the stage verbs and these evolve without touching each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from deploy_model.cli.base import EXIT_CODES, DryRunOpt, JsonOpt, _say, app, run_stage
from deploy_model.common.errors import StageError


@app.command("answers", epilog=EXIT_CODES)
def answers_cmd(as_json: bool = JsonOpt) -> None:
    """The keys answers.yaml may hold: type, allowed values or range, default and meaning.

    Read from the answers model `plan` validates with, so they are exactly what plan accepts
    (flags of `plan --help` are spelled differently: --rps is requests_per_second).
    """
    from deploy_model.plan.answer_keys import run_answers

    run_stage("answers", as_json, lambda: run_answers(as_json))


@app.command("models", epilog=EXIT_CODES)
def models_cmd(
    root: Path = typer.Option(Path("."), "--root", help="Folder searched recursively [default: the current one]."),
    as_json: bool = JsonOpt,
) -> None:
    """List the model files of a project (.onnx first; other formats inspect refuses with how to export).

    Skips .git, virtualenvs, node_modules and deploy/. At most 200 paths, relative to --root.
    With MLFLOW_TRACKING_URI set, also the registered models (`registry`: models:/NAME/LATEST).
    """
    from deploy_model.model.request import run_models

    run_stage("models", as_json, lambda: run_models(root))


@app.command("trial", epilog=EXIT_CODES)
def trial_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding deployment.yaml; writes trial.json (and trial/)."),
    input_path: Path | None = typer.Option(None, "--input", help="batch: a sample of the user's data (file or folder: .npy/.npz/.parquet/.csv/.jsonl) [default: rows made from the profile]."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, max=3600, help="Most seconds the trial may take."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """The local trial of batch and streaming plans (realtime: serve/smoke/loadtest; edge: quantize).

    batch: the batch runner of the bundle's CronJob scores --input into trial/output/ (jsonl).
    streaming: a worker round trip through a local redis-server on a free loopback port (20
    requests, answered and dead-lettered counted, latency p50/p95); without redis-server the trial
    is skipped, exit 0, and trial.json says why. Exit 1 when rows fail or requests go unanswered;
    2 for a realtime or edge plan.
    """
    from deploy_model.measure.trial import run_trial

    run_stage("trial", as_json, lambda: run_trial(out, input_path, timeout_s=timeout, dry_run=dry_run))


@app.command("summary", epilog=EXIT_CODES)
def summary_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory."),
    as_json: bool = typer.Option(True, "--json", help="One JSON document on stdout (the default)."),
    as_text: bool = typer.Option(False, "--text", help="A few lines for a person instead: outcome, counts, every skipped check."),
) -> None:
    """The deployment in one short JSON document: outcome, verdict figures, what was skipped, paths.

    Read from the stage files (deployment.yaml, validation.json, smoke.json, loadtest.json,
    quantization.json, trial.json); a fraction of DEPLOYMENT.md's size. outcome is go, no-go
    (problems lists why) or incomplete (not_run lists the local checks the pattern expects).
    Exit 0 whatever the outcome; 1 when there is no deployment.yaml.
    """
    print_summary(out, as_text)


def print_summary(out: Path, as_text: bool = False) -> None:
    from deploy_model.report.summary import build_summary, summary_lines

    try:
        summary: dict[str, Any] = build_summary(out)
    except StageError as exc:
        _say(f"summary: error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    print("\n".join(summary_lines(summary)) if as_text else json.dumps(summary, default=str))
