"""The decisions of one plan, in the order they were made, each with the rule that made it."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.spec import Decision


class DecisionLog:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def decide(self, decision: str, value: Any, rule: str) -> Any:
        """Record one choice and hand its value back, so a decision can `return log.decide(...)`."""
        self.decisions.append(Decision(decision=decision, value=value, rule=rule))
        return value
