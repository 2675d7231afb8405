"""The report's monitoring section tells how to send ground truth: the feedback endpoint, a curl
example whose body the server's own parser accepts, and whether payload logging turns it on."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

from onnxserve.feedback_api import parse_items

from deploy_model.report.writer import REPORT_FILE, run_report


def _monitoring(directory: Path) -> str:
    run_report(directory)
    return (directory / REPORT_FILE).read_text().split("## Monitoring", 1)[1].split("\n## ", 1)[0]


def test_the_monitoring_section_shows_the_feedback_endpoint(planned: Callable[..., Path]) -> None:
    monitoring = _monitoring(planned())
    assert "**Ground truth.**" in monitoring and "/feedback` (REST only" in monitoring
    assert "off, it answers 404" in monitoring and "below 90%" in monitoring
    # Off in this plan: no example a user would paste only to get the 404.
    assert "/feedback -H" not in monitoring.split("**Ground truth.**", 1)[1].split("**Alert rules**", 1)[0]
    logged = _monitoring(planned(payload_logging={"enabled": True}))
    assert "keeps its last 10,000 answers" in logged
    block = logged.split("**Ground truth.**", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:4] == ["curl", "-s", "-X", "POST"] and words[4].endswith("/feedback")
    body = words[words.index("-d") + 1].encode()
    assert parse_items(body) == [(json.loads(body)["id"], 1)]  # the server takes it as it is
