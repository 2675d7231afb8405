"""What a cluster would run behind the FAKE API server during a scripted rollout: real reference
servers (`python -m onnxserve`) on loopback for the stable and the canary track, a real Prometheus
scraping them with the labels the gates select on (namespace, app, track), and a client thread
that sends each request to the canary with the probability of the live HTTPRoute weight.

No pods run behind fake_kube.py, so the lab plays the kubelet: a test starts the servers of the
models the applied bundle runs. 30% of the requests carry an input (9.0 first) that the example
model and its retrained versions answer and the failing candidate of tests/cluster/canary_models.py
refuses (HTTP 400): the gate on rejected requests tells a broken candidate apart.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

from scrape_lab import EVERY_SECOND, OnnxServer, RealPrometheus, wait_until

BODY = [0.5] * 16
ODD = [9.0] + [0.5] * 15
# Seconds-long gates (the plan's are minutes): 6 s of window and rate, one point a second, as
# tests/cluster/test_rollout_gates.py runs them against the same Prometheus set-up.
GATE_FLAGS = "--window 6 --rate-window 6s --resolution 1 --json"


class Lab:
    """Prometheus (file service discovery) + the servers of each track + the traffic thread."""

    def __init__(self, root: Path, kube: Any, namespace: str, name: str, rps: float = 12) -> None:
        self.root, self.kube, self.namespace, self.name, self.rps = root, kube, namespace, name, rps
        root.mkdir(parents=True, exist_ok=True)
        self.targets = root / "targets.json"
        self.targets.write_text("[]")
        self.servers: dict[str, OnnxServer] = {}
        self.sent: dict[str, dict[str, int]] = {}  # track -> {status code: count}
        self.prom = RealPrometheus(root, {"global": EVERY_SECOND, "scrape_configs": [
            {"job_name": "servers", "file_sd_configs": [{"files": [str(self.targets)]}]}]})
        self.url = self.prom.url
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ready(self) -> Lab:
        self.prom.ready()
        return self

    def run(self, models: dict[str, Path]) -> None:
        """Serve {track: model file} (the pods of the applied bundle), replacing what ran before; scraped once up."""
        started = {track: OnnxServer(model, self.name, self.root / f"{track}-{model.parent.name}.log")
                   for track, model in models.items()}
        for server in started.values():
            server.ready()
        with self._lock:
            old, self.servers = self.servers, started
        for server in old.values():
            server.stop()
        groups = [{"targets": [f"127.0.0.1:{s.port}"], "labels": {"namespace": self.namespace, "app": self.name,
                                                                   "track": track}} for track, s in started.items()]
        self.targets.write_text(json.dumps(groups))
        ports = {f"127.0.0.1:{s.port}" for s in started.values()}

        def scraped() -> bool:
            up = {t["labels"]["instance"] for t in self.prom.active_targets() if t["health"] == "up"}
            return ports <= up

        wait_until("the servers scraped by Prometheus", scraped, 60)

    def canary_weight(self) -> int:
        """The live HTTPRoute's weight on the canary backend (0 without a route or a canary backend)."""
        route = self.kube.find("HTTPRoute", self.name, self.namespace)
        refs = route["spec"]["rules"][0]["backendRefs"] if route else []
        return sum(int(ref.get("weight", 1)) for ref in refs if ref["name"].endswith("-canary")) if len(refs) > 1 else 0

    def _send(self) -> None:
        import httpx

        rng = random.Random(7)
        with httpx.Client(timeout=5) as client:
            while not self._stopping.is_set():
                track = "canary" if rng.random() * 100 < self.canary_weight() else "stable"
                data = ODD if rng.random() < 0.3 else BODY
                with self._lock:
                    server = self.servers.get(track)
                if server is not None:
                    body = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": data}]}
                    try:
                        code = client.post(f"{server.url}/v2/models/{self.name}/infer", json=body).status_code
                        counts = self.sent.setdefault(track, {})
                        counts[str(code)] = counts.get(str(code), 0) + 1
                    except httpx.HTTPError:
                        pass
                self._stopping.wait(1 / self.rps)

    def start_traffic(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        for server in self.servers.values():
            server.stop()
        self.prom.stop()
