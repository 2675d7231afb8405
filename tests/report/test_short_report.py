"""deploy's short report when every stage passed but the full report could not be written: it names
the report as what stopped, with the reason, never "stopped at `?`: unknown"."""

from __future__ import annotations

from pathlib import Path

from deploy_model.cli.pipeline import _write_report


def test_a_failed_full_report_after_passing_stages_names_the_report(tmp_path: Path) -> None:
    completed = [{"stage": "inspect", "seconds": 1.0}, {"stage": "plan", "seconds": 0.5}]
    # No deployment.yaml here: the full report refuses, as it would on a spec it cannot read.
    result, problem = _write_report(tmp_path, None, completed, ["inspect", "plan", "report"])
    assert problem and problem.startswith("the full report could not be written")
    text = (tmp_path / "DEPLOYMENT.md").read_text()
    assert "deploy stopped at `report`: the full report could not be written" in text
    assert "`?`" not in text and "unknown" not in text
    assert "| report | **failed** |" in text and "| plan | done |" in text
    assert result is not None and result["summary"]["outcome"] == "NO-GO"
