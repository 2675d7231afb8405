"""The `deploy-model` typer app and what every verb shares: options, output, refusals as exit codes.

Exit codes (every verb): 0 ok; 1 the input was checked and refused; 2 usage error, or a stage
that is not available yet. With --json, stdout holds exactly one JSON document; diagnostics go
to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from deploy_model import __version__
from deploy_model.bundle.guards import io_refusal
from deploy_model.common.errors import NotAvailableYet, StageError

PLUGIN_ROOT = Path(__file__).resolve().parents[3]
EXIT_CODES = (
    "Exit codes: 0 ok; 1 the input was checked and refused (the message names what was wrong "
    "and what was expected); 2 usage error."
)

app = typer.Typer(
    name="deploy-model",
    help="Take an ML model (ONNX) to a validated, load-tested deployment bundle, one stage at a time. "
    + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = typer.Option(False, "--json", help="Print the result as one JSON document on stdout.")
DryRunOpt = typer.Option(False, "--dry-run", help="Do the work but write no file.")
ForceOpt = typer.Option(False, "--force", help="Replace files in --out that deploy-model did not write (not in its manifest.json).")
SampleOpt = typer.Option(
    None, "--sample",
    help="Real input values: .npz keyed by input name, .npy for a single-input model, or a V2 request "
    ".json. Copied into the deployment directory and used instead of synthetic inputs.",
)
DimOpt = typer.Option([], "--dim", help="NAME=VALUE for a symbolic input dim of synthetic inputs (repeatable).")
TimeBudgetOpt = typer.Option(
    10.0, "--time-budget-s", min=0.1, max=3600,
    help="Seconds inspect's latency measurement may take in all (fewer runs on slow models; a larger batch that would not fit is skipped).",
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any], as_json: bool) -> None:
    """The stage result: JSON on stdout, or a short human summary."""
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if v is not None}, indent=2, default=str))
        return
    stage = result.get("stage", "?")
    for path in result.get("wrote", []):
        print(f"{stage}: wrote {path}")
    if result.get("dry_run"):
        print(f"{stage}: dry run, nothing written")
    for key, value in (result.get("summary") or {}).items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value, default=str)
        print(f"  {key}: {value}")
    for decision in result.get("decisions") or []:
        print(f"  - {decision['decision']}: {decision['rule']}")


def run_stage(stage: str, as_json: bool, work: Callable[[], dict[str, Any]]) -> None:
    """Run one stage: turn refusals into exit codes and one-line messages, never a traceback."""
    try:
        result = work()
    except (StageError, OSError) as caught:  # an unwritable --out is a refusal, not an internal error
        exc = caught if isinstance(caught, StageError) else io_refusal(stage, caught)
        _say(f"{stage}: error: {exc}")
        if as_json:
            print(json.dumps({"stage": stage, "ok": False, "error": exc.message, "problems": exc.problems}, indent=2))
        raise typer.Exit(exc.exit_code) from None
    emit(result, as_json)


def raise_not_available(verb: str, what: str, as_json: bool) -> None:
    exc = NotAvailableYet(f"stage '{verb}' is not available yet in deploy-model {__version__} ({what})")
    _say(f"{verb}: {exc}")
    if as_json:
        print(json.dumps({"stage": verb, "ok": False, "error": exc.message}))
    raise typer.Exit(exc.exit_code)

def model_argument(model: Path, stage: str, as_json: bool) -> Path:
    """A stage's MODEL argument: `@FILE` (the user's request) or a path; `~` expanded. Refusals exit 1."""
    from deploy_model.model.request import resolve_model_argument

    try:
        return resolve_model_argument(model)
    except StageError as exc:
        _say(f"{stage}: error: {exc}")
        if as_json:
            print(json.dumps({"stage": stage, "ok": False, "error": exc.message}, indent=2))
        raise typer.Exit(exc.exit_code) from None


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        print(f"deploy-model {__version__}")
        raise typer.Exit(0)
