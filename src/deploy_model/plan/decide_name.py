"""Decide the deployment name: answered, else the previous release's, else the model file's."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers


def decide_name(log: DecisionLog, answers: Answers, model: dict[str, Any], previous_name: str | None) -> str:
    """The deployment's name; release N keeps release N-1's (plan --previous) whatever the new file is called.

    The name is every object's name and selector: a name taken from a renamed file would start a
    second deployment beside the one serving, with the stable version re-created under the new name.
    """
    if answers.name:
        if previous_name is not None and answers.name != previous_name:
            return log.decide("name", answers.name, (
                f"answered: the deployment forks from {previous_name} (the previous release's name): its objects "
                f"are new, beside {previous_name}'s, which keep serving until deleted"))
        return log.decide("name", answers.name, "answered")
    if previous_name is not None:
        renamed = f" (the model file is now named for {model['name']})" if model["name"] != previous_name else ""
        return log.decide("name", previous_name, f"the previous release's deployment name (plan --previous){renamed}")
    return log.decide("name", model["name"], "derived from the model file name")
