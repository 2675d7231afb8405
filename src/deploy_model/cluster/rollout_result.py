"""The result every `deploy-model rollout` verb returns, and the one-line account of a release's state."""

from __future__ import annotations

import time
from typing import Any

from deploy_model.cluster.gates import Verdict
from deploy_model.cluster.release import Release


def verb_result(verb: str, rel: Release, state: dict[str, Any], action: str, message: str, ok: bool, dry_run: bool,
                verdict: Verdict | None = None) -> dict[str, Any]:
    return {"stage": f"rollout {verb}", "ok": ok, "dry_run": dry_run, "wrote": [], "action": action, "message": message,
            "release": {k: state.get(k) for k in ("candidate", "stable", "phase", "step", "weight", "steps",
                                                     "step_started", "reason")},
            "gates": verdict.as_dict() if verdict else state.get("last_check"),
            "silent": bool(verdict and verdict.silent) or (action == "hold" and verdict is None),
            "summary": {"action": action, "weight": f"{state.get('weight', 0)}%", "phase": state.get("phase"),
                        "message": message}}


def describe_state(rel: Release, state: dict[str, Any]) -> str:
    if state["phase"] == "experiment":
        return (f"{rel.candidate} in an A/B test at {state['weight']}% until `experiment analyze` decides "
                "(then rollout promote or rollback)")
    if state["phase"] == "pending":
        return f"{rel.candidate} not started: `rollout advance` checks the canary and sends it {rel.steps[0]}%"
    if state["phase"] == "progressing":
        since = time.time() - float(state["step_started"])
        return (f"{rel.candidate} at {state['weight']}% (step {state['step'] + 1}/{len(rel.steps)}) for {since:.0f}s "
                f"of a {rel.window_s:g}s window")
    return f"{rel.candidate} {state['phase']}" + (f": {state['reason']}" if state.get("reason") else "")
