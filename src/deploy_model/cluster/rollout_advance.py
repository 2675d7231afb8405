"""One `rollout advance` step: the gates judge the current weight, then the canary moves on, holds or rolls back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploy_model.cluster.canary import canary_name, canary_scale, follow_weight
from deploy_model.cluster.gates import Prometheus, Verdict, evaluate
from deploy_model.cluster.kubeclient import Kube
from deploy_model.cluster.release import Release
from deploy_model.cluster.release_state import current, iso, write
from deploy_model.cluster.rollout_finish import rollback
from deploy_model.cluster.rollout_result import verb_result
from deploy_model.cluster.splitters import live_weight


def advance_once(kube: Kube, prom: Prometheus, rel: Release, dry_run: bool, resolution_s: float,
                 second_opinion: Callable[[Verdict, float], Verdict] | None = None) -> dict[str, Any]:
    """`second_opinion` (the statistical judgement) sees the gates' verdict and may turn it."""
    live, state = current(kube, rel)
    phase = state["phase"]
    if phase == "rolled-back":
        if not dry_run:
            canary_scale(kube, rel, 0)  # finish a rollback a killed driver left half done
            if live_weight(rel.splitters[0], live) != 0:
                state = write(kube, rel, live, state, 0, "rolled back", state.get("reason", ""))
        result = verb_result("advance", rel, state, "rolled-back", f"{rel.candidate} was rolled back: {state.get('reason')}; "
                             "plan and apply a new candidate to try again", False, dry_run)
        return {**result, "outcome": "refused"}  # rolled back before this call: nothing to advance
    if phase == "promoted":
        return verb_result("advance", rel, state, "done", f"{rel.candidate} is promoted: nothing to advance", True, dry_run)
    if rel.hold_reason:  # an A/B test: its split holds until the experiment's verdict
        return {**verb_result("advance", rel, state, "refused", rel.hold_reason, False, dry_run), "outcome": "refused"}
    if phase == "passed":
        return verb_result("advance", rel, state, "passed", f"every step passed at {state['weight']}%: make "
                           f"{rel.candidate} stable with `deploy-model rollout promote`", True, dry_run)
    if state["step"] < 0:
        ok, phrase, _ = canary_scale(kube, rel)
        if not ok:
            return verb_result("advance", rel, state, "hold", f"canary {canary_name(rel)} is not available "
                               f"({phrase}): no traffic moves to it", True, dry_run)
        return _step(kube, rel, live, state, 0, f"canary {canary_name(rel)} available ({phrase})", dry_run)
    prom_verdict = evaluate(prom, rel.gates, float(state["step_started"]), rel.window_s, resolution_s)
    if second_opinion is not None:
        prom_verdict = second_opinion(prom_verdict, float(state["step_started"]))
    check = {"at": iso(time.time()), **prom_verdict.as_dict()}
    if prom_verdict.action == "fail":
        reason = f"{prom_verdict.reason} at {state['weight']}%"
        state = rollback(kube, rel, live, {**state, "last_check": check}, reason, dry_run)
        verb = "would roll back" if dry_run else "rolled back: weight 0, canary scaled to 0"
        return verb_result("advance", rel, state, "rolled-back", f"{verb}; {reason}", False, dry_run, prom_verdict)
    if prom_verdict.action == "hold":
        return verb_result("advance", rel, state, "hold", f"holding at {state['weight']}%: {prom_verdict.reason}", True,
                           dry_run, prom_verdict)
    if state["step"] + 1 >= len(rel.steps):
        state = {**state, "phase": "passed", "last_check": check}
        if not dry_run:
            state = write(kube, rel, live, state, state["weight"], "passed", prom_verdict.reason)
        return verb_result("advance", rel, state, "passed", f"step {state['step'] + 1}/{len(rel.steps)} at "
                           f"{state['weight']}% passed ({prom_verdict.reason}): promote with `deploy-model rollout "
                           "promote`", True, dry_run, prom_verdict)
    return _step(kube, rel, live, {**state, "last_check": check}, state["step"] + 1, prom_verdict.reason, dry_run,
                 prom_verdict)


def _step(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], step: int, why: str, dry_run: bool,
          verdict: Verdict | None = None) -> dict[str, Any]:
    weight = rel.steps[step]
    before = state["weight"]
    state = {**state, "phase": "progressing", "step": step, "step_started": time.time()}
    # The canary is sized for its share before the traffic arrives: at w% at least w% of stable's floor.
    scaled = follow_weight(kube, rel, weight, dry_run)
    if not dry_run:
        state = write(kube, rel, live, state, weight, f"step {step + 1}", why)
    if rel.colours:  # blue-green moves everything at once: a switch of tracks, not a weight
        move = f"{'would switch' if dry_run else 'switched'} traffic to the {rel.colours[1]} track"
    else:
        move = f"{'would move' if dry_run else 'moved'} the canary {before}% -> {weight}%"
    sized = f"; {'would scale' if dry_run else 'scaled'} {scaled}" if scaled else ""
    return verb_result("advance", rel, state, "advanced", f"{move} (step {step + 1}/{len(rel.steps)}): {why}{sized}",
                       True, dry_run, verdict)
