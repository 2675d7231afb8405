"""DEPLOYMENT.md's local trial of batch and streaming plans: its verdict in the outcome and its figures from trial.json."""

from __future__ import annotations

from typing import Any

from deploy_model.measure.percentiles import shown
from deploy_model.report.markdown import code, md, num, one_line
from deploy_model.report.shell import sh

# The patterns `deploy-model trial` runs locally (the others are measured by smoke/loadtest or quantize).
TRIAL_PATTERNS = ("batch", "event-driven")


def trial_verdict(trial: dict[str, Any] | None, pattern: str) -> tuple[bool | None, str]:
    """(go, reason): True when the trial passed, False when it failed, None when it measured nothing
    (absent, skipped, or written for another plan's pattern). Same reading as `summary`'s."""
    if trial is None:
        return None, "local trial did not run (`deploy-model trial`)"
    if trial.get("pattern") != pattern:
        return None, f"trial.json is from a {trial.get('pattern')} plan, not this {pattern} one: run `deploy-model trial` again"
    if trial.get("skipped"):
        return None, f"local trial skipped: {trial['skipped']}"
    if not trial.get("ok"):
        return False, f"local trial failed: {trial.get('error') or 'see trial.json'}"
    return True, f"local trial passed: {_figures(trial)}"


def _figures(trial: dict[str, Any]) -> str:
    if trial["pattern"] == "batch":
        return (f"{num(trial.get('rows'))} rows scored, {num(trial.get('rejected'))} rejected, "
                f"{num(trial.get('rows_per_second'))} rows/s")
    dead = trial.get("dead_lettered") or 0
    return (f"{num(trial.get('answered'))} of {num(trial.get('sent'))} messages answered, "
            f"{f'{dead} dead-lettered' if dead else 'none dead-lettered'}, per message p50 {shown(trial, 50)}, "
            f"p95 {shown(trial, 95)} over {num(trial.get('samples'))} samples, after a start-up of "
            f"{num(trial.get('startup_seconds'), 2)} s")


def with_trial(outcome: dict[str, Any], trial: dict[str, Any] | None, pattern: str,
               validated: bool) -> dict[str, Any]:
    """The outcome of a plan without a request path, the local trial's verdict folded in: GO only when
    the trial passed and the bundle was validated; a failure found before stays NO-GO."""
    if pattern not in TRIAL_PATTERNS:
        return outcome
    go, reason = trial_verdict(trial, pattern)
    reasons = [*outcome["reasons"], md(one_line(reason, 600))]
    if outcome["go"] is False or go is False:
        return {**outcome, "go": False, "label": "NO-GO", "reasons": reasons}
    if go is None:
        return {**outcome, "go": None, "label": "not measured", "reasons": reasons}
    if not validated:  # as `summary`: a passed trial without validation is incomplete evidence
        return {**outcome, "go": None, "label": "INCOMPLETE",
                "reasons": [*reasons, "validation did not run (`deploy-model validate`)"]}
    return {**outcome, "go": True, "label": "GO", "reasons": reasons}


def trial_section(trial: dict[str, Any] | None, pattern: str, directory: str) -> str | None:
    """The "Local trial" part of Measured results (None for the patterns `trial` does not run)."""
    if pattern not in TRIAL_PATTERNS:
        return None
    command = code(sh("deploy-model", "trial", "--out", directory))
    lines = ["### Local trial", ""]
    go, reason = trial_verdict(trial, pattern)
    if trial is None or go is None:
        return "\n".join([*lines, f"Not measured: {md(reason)} ({command} runs it)."])
    if pattern == "batch":
        lines += [f"The batch runner of the bundle's CronJob (`python -m onnxserve.batch`) scored {md(trial.get('source'))} "
                  f"into {code(trial.get('output'))} (throughput over the scoring time, the runner's start-up "
                  "left out; the whole run is the wall time).", "",
                  "| rows scored | rows rejected | scoring s | whole run s | throughput |",
                  "| ---: | ---: | ---: | ---: | ---: |",
                  f"| {num(trial.get('rows'))} | {num(trial.get('rejected'))} | {num(trial.get('scoring_seconds'), 3)} "
                  f"| {num(trial.get('seconds'), 2)} | {num(trial.get('rows_per_second'))} rows/s |"]
    else:
        lines += ["The bundle's worker (`python -m onnxserve.worker`) ran against a local redis-server: a warm-up "
                  "message first (start-up: from the worker's launch to that message's answer), then each message "
                  "sent after the previous answer, timed from `XADD` to its answer on the result stream "
                  "(a p50 needs 2 samples, a p95 20).", "",
                  "| start-up s | answered | dead-lettered | p50 ms | p95 ms | samples | messages/s |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                  f"| {num(trial.get('startup_seconds'), 2)} | {num(trial.get('answered'))} of {num(trial.get('sent'))} "
                  f"| {num(trial.get('dead_lettered'))} | {md(shown(trial, 50, ''))} | {md(shown(trial, 95, ''))} "
                  f"| {num(trial.get('samples'))} | {num(trial.get('messages_per_second'))} |"]
    why = _figures(trial) if go else reason
    lines += ["", f"**Trial verdict: {'passed' if go else 'FAILED'}**: {md(one_line(why, 600))}. Re-run: {command}."]
    return "\n".join(lines)
