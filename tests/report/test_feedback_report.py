"""The report's monitoring section tells how to send ground truth: the feedback endpoint, a curl
example whose body the server's own parser accepts, and whether payload logging turns it on."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

from onnxserve.feedback_api import parse_items

from deploy_model.report.writer import REPORT_FILE, run_report


def test_the_monitoring_section_shows_the_feedback_endpoint(planned: Callable[..., Path]) -> None:
    directory = planned()
    run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    monitoring = text.split("## Monitoring", 1)[1]
    assert "**Ground truth.**" in monitoring and "/feedback` (REST only" in monitoring
    assert "off, it answers 404" in monitoring and "below 90%" in monitoring
    block = monitoring.split("**Ground truth.**", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:4] == ["curl", "-s", "-X", "POST"] and words[4].endswith("/feedback")
    body = words[words.index("-d") + 1].encode()
    assert parse_items(body) == [(json.loads(body)["id"], 1)]  # the server takes it as it is
    logged = planned(payload_logging={"enabled": True})
    run_report(logged)
    assert "keeps its last 10,000 answers" in (logged / REPORT_FILE).read_text()
