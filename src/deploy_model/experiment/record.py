"""experiment.json in the deployment directory, and the verdict in a few human lines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deploy_model.common.files import write_json

EXPERIMENT_FILE = "experiment.json"


def write_experiment(out: Path, verb: str, result: dict[str, Any]) -> Path:
    """Write the result (atomically: a reader never sees half a file)."""
    doc = {"verb": verb, "analyzed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    return write_json(out / EXPERIMENT_FILE, doc)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_lines(result: dict[str, Any]) -> dict[str, str]:
    """The verdict and its figures as `key: value` lines."""
    arms = result.get("arms", {})
    lines = {"verdict": str(result.get("verdict")), "arms": f"A={arms.get('A')} B={arms.get('B')}"}
    if result.get("decision"):
        lines["decision"] = result["decision"]
    if result.get("metric") == "latency":
        for name, check in (result.get("checks") or {}).items():
            lines[name] = f"{check['verdict']} ({check['test']} p={_fmt(check['p_value'])}, n={check['n']})"
        for reason in result.get("reasons") or []:
            lines.setdefault("reasons", reason)
        return lines
    if result.get("n"):
        lines["n"] = f"A {result['n']['A']}, B {result['n']['B']} scored rows"
    if result.get("estimates"):
        est, seq, fixed = result["estimates"], result["sequential"], result["fixed_horizon"]
        lines[result["metric"]] = f"A {_fmt(est['A'])}, B {_fmt(est['B'])}; effect B-A {_fmt(result['effect'])}"
        lines["sequential"] = (f"always-valid p={_fmt(seq['p_value'])}, CI [{_fmt(seq['ci'][0])}, {_fmt(seq['ci'][1])}], "
                               f"boundary {'crossed' if seq['crossed'] else 'not crossed'} after {seq['looks']} look(s)")
        lines["fixed-horizon"] = (f"{fixed['test']} p={_fmt(fixed['p_value'])}, "
                                  f"CI [{_fmt(fixed['ci'][0])}, {_fmt(fixed['ci'][1])}]")
    for reason in result.get("reasons") or []:
        lines.setdefault("reasons", reason)
    if any(result.get(k) for k in ("unlabelled", "unscorable", "unmatched_labels")):
        lines["left out"] = (f"{result.get('unlabelled', 0)} unlabelled, {result.get('unscorable', 0)} unscorable, "
                             f"{result.get('unmatched_labels', 0)} labels matching no request")
    return lines
