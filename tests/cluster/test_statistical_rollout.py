"""`rollout status --prometheus` judges a slow canary statistically from what a real Prometheus
scraped of real servers: the request counts since the step began are exact, and the p-value is
scipy's Mann-Whitney on the same bucket counts read from the servers' own /metrics. The cluster
is the FAKE API server of test_rollout_gates (no real one runs here); its fixtures are reused."""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as sps
from test_rollout_gates import BODY, CLI, NAME, Lab, advance, lab, release, wait_until

pytestmark = pytest.mark.slow
__all__ = ["lab", "release"]  # fixtures, imported to be reused


def buckets(url: str) -> dict[float, float]:
    """Cumulative model_request_latency_seconds_bucket counts by le, summed over endpoints."""
    out: dict[float, float] = {}
    for row in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if row.startswith("model_request_latency_seconds_bucket{"):
            le = row.split('le="', 1)[1].split('"', 1)[0]
            edge = math.inf if le == "+Inf" else float(le)
            out[edge] = out.get(edge, 0.0) + float(row.rsplit(" ", 1)[1])
    return out


def per_bucket(before: dict[float, float], after: dict[float, float]) -> np.ndarray:
    cumulative = np.array([after[e] - before.get(e, 0.0) for e in sorted(after)])
    return np.diff(np.r_[0.0, cumulative])


def status(r: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([*CLI, "rollout", "status", "--out", str(r["out"]), "--kubeconfig", str(r["kc"]),
                           "--prometheus", r["lab"].prom_url, "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("release", ["slow"], indirect=True)
def test_a_slow_canary_is_judged_on_exact_counts_with_scipys_p_value(release: dict[str, Any], lab: Lab) -> None:
    r = release
    first = advance(r)  # the canary is available: it gets its first weight, the step begins
    assert first.returncode == 0 and "moved the canary 0% -> 10%" in first.stderr, first.stderr
    servers = {"stable": lab.stable.url, "canary": r["canary"].url}
    before = {t: buckets(u) for t, u in servers.items()}
    sent = 30
    with httpx.Client(timeout=30) as client:
        for _ in range(sent):
            for url in servers.values():
                assert client.post(f"{url}/v2/models/{NAME}/infer", json=BODY).status_code == 200
    counts = {t: per_bucket(before[t], buckets(u)) for t, u in servers.items()}
    assert counts["stable"].sum() == counts["canary"].sum() == sent

    def judged() -> dict[str, Any] | None:
        doc = status(r)
        lat = doc["statistical"]["checks"].get("latency")
        return doc if lat and lat["n"] == {"stable": sent, "canary": sent} else None

    doc = wait_until("Prometheus to have scraped every request", judged, 60)
    stat = doc["statistical"]
    assert stat["source"] == "prometheus" and stat["gate"] is False
    assert stat["buckets"] == {t: [int(c) for c in counts[t]] for t in servers}
    idx = {t: np.repeat(np.arange(c.size), c.astype(int)) for t, c in counts.items()}
    ref = sps.mannwhitneyu(idx["canary"], idx["stable"], method="asymptotic", use_continuity=True)
    lat = stat["checks"]["latency"]
    assert lat["p_value"] == pytest.approx(ref.pvalue, rel=1e-9) and lat["statistic"] == ref.statistic
    assert stat["checks"]["errors"]["n"] == {"stable": sent, "canary": sent}
    assert stat["checks"]["errors"]["error_rate"] == {"stable": 0.0, "canary": 0.0}
    # The slow model's answers land in later buckets than stable's every time: a clear fail.
    assert lat["verdict"] == "fail" and lat["p_canary_slower"] >= 0.56 and stat["verdict"] == "fail"
    assert doc["summary"]["statistical"].startswith("fail (prometheus; latency p=")
