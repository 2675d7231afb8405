"""`deploy`: every stage in order, the server always stopped, and a report whatever happens.

plugins -> inspect -> plan -> quantize -> render -> validate -> serve -> smoke -> loadtest (short)
-> report. The server is started by the serve step and stopped by `Measure.close()` in a finally.
A stage that fails while the server has died says so, with the tail of the server log.

A failed run still writes DEPLOYMENT.md (and deploy.json): where it stopped and why, in the
stage's own words (a server's refusal reason, the model's rejection of synthetic inputs). When
the failure comes before `plan` there is no spec to report from, so the report is a short one
that names the stage, the reason and what to try. A run that completes with a NO-GO outcome exits
1 like a failed one: a pipeline must not ship it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_model.bundle.guards import io_refusal
from deploy_model.common.errors import EXIT_REFUSED, StageError
from deploy_model.common.files import write_json
from deploy_model.measure.loadtest import CHART_FILE, LOADTEST_FILE, run_loadtest
from deploy_model.measure.serve import SERVER_FILE, ServerProcess, log_tail, not_served_reason
from deploy_model.measure.smoke import SMOKE_FILE, run_smoke
from deploy_model.plan.specfile import load_spec
from deploy_model.report.examples import REQUEST_FILE
from deploy_model.report.writer import REPORT_FILE, failure_report, run_report

# The short sweep of `deploy`: enough to draw the curve and judge the SLA in about 10 s.
DEPLOY_LEVELS = [1, 4, 16]
DEPLOY_SECONDS = 2.0
DEPLOY_FILE = "deploy.json"
# Files of stages after `plan` that a new run replaces: one from an earlier run must never be
# reported as this run's. deployment.yaml stays (plan reads it to keep replicas stable), and so does
# manifest.json (render reads it to tell its own files from the user's; it describes what is on disk).
STALE_FILES = ("validation.json", "quantization.json", SERVER_FILE, SMOKE_FILE, LOADTEST_FILE,
               CHART_FILE, REPORT_FILE, REQUEST_FILE, DEPLOY_FILE)
# A failure at or before this stage leaves no fresh spec: the short report is written instead.
SPEC_STAGE = "plan"


class Measure:
    def __init__(self, directory: Path, levels: list[int] | None = None, seconds: float = DEPLOY_SECONDS,
                 port: int | None = None) -> None:
        self.directory = directory
        self.levels = levels or DEPLOY_LEVELS
        self.seconds = seconds
        self.port = port
        self.server: ServerProcess | None = None
        self.skipped: str | None = None
        self._previous: Any = None

    def steps(self) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        return [("serve", self.serve), ("smoke", self.smoke), ("loadtest", self.loadtest)]

    def _skip(self, stage: str) -> dict[str, Any]:
        return {"stage": stage, "ok": True, "wrote": [], "skipped": self.skipped}

    def serve(self) -> dict[str, Any]:
        for name in (SERVER_FILE, SMOKE_FILE, LOADTEST_FILE, CHART_FILE):
            (self.directory / name).unlink(missing_ok=True)
        self.skipped = not_served_reason(load_spec(self.directory))
        if self.skipped:
            return self._skip("serve")
        self.server = ServerProcess(self.directory, port=self.port)
        self._trap_sigterm()
        info = self.server.start()
        return {"stage": "serve", "ok": True, "wrote": [str(self.directory / SERVER_FILE)],
                "summary": {"url": info["url"], "pid": info["pid"], "provider": info.get("provider")}}

    def _guard(self, stage: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a measuring stage; if the server died meanwhile, say that rather than a symptom."""
        try:
            result = work()
        except StageError as exc:
            died = self._died()
            if died:
                raise StageError(f"{died} during {stage}; {exc.message}", exc.problems + log_tail(self.server.log if self.server else None)) from None
            raise
        died = self._died()
        if died:
            raise StageError(f"{died} during {stage}", log_tail(self.server.log if self.server else None))
        return result

    def _died(self) -> str | None:
        if self.server is None or self.server.proc is None:
            return None
        code = self.server.proc.poll()
        return None if code is None else f"the reference server (pid {self.server.proc.pid}) exited with code {code}"

    def smoke(self) -> dict[str, Any]:
        if self.skipped or self.server is None:
            return self._skip("smoke")
        url = self.server.url
        return self._guard("smoke", lambda: run_smoke(self.directory, url))

    def loadtest(self) -> dict[str, Any]:
        if self.skipped or self.server is None:
            return self._skip("loadtest")
        url = self.server.url
        return self._guard("loadtest", lambda: run_loadtest(self.directory, url, levels=self.levels, seconds=self.seconds))

    def _trap_sigterm(self) -> None:
        """A SIGTERM to deploy (CI cancelling a job) unwinds through the finally that stops the server."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, frame: object) -> None:
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)

    def close(self) -> str | None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self.server is None:
            return None
        server, self.server = self.server, None
        return server.stop()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def deploy_steps(model: Path, directory: Path, answers: Path | None, measure: Measure, plugin_root: Path,
                 sample: Path | None = None, dims: list[str] | None = None, time_budget_s: float | None = None,
                 force: bool = False, previous: Path | None = None,
                 version: str | None = None) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """Every stage of `deploy`, in order; serve, smoke and loadtest come last, whatever is added above.

    `previous` is plan's --previous (the release serving now); `version`, when the directory was
    named for it (deploy --release-of), must be the version plan decides.
    """
    from deploy_model.bundle.render import run_render
    from deploy_model.bundle.validate import run_validate
    from deploy_model.model.inspection import run_inspect
    from deploy_model.plan.planner import run_plan
    from deploy_model.plan.plugins import run_plugins

    inspect_options: dict[str, Any] = {}
    if sample is not None:
        inspect_options["sample"] = sample  # inspect checks it and copies it into samples/
    if dims:
        inspect_options["dims"] = list(dims)
    if time_budget_s is not None:
        inspect_options["time_budget_s"] = time_budget_s
    # --force (files of the user's in --out may be replaced) reaches render only when given.
    render_options: dict[str, Any] = {"force": True} if force else {}
    return [
        ("plugins", lambda: run_plugins(directory, plugin_root, [])),
        ("inspect", lambda: run_inspect(model, directory, **inspect_options)),
        ("plan", lambda: planned_as(run_plan(directory, answers, {}, previous=previous), directory, version)),
        # Edge plans with quantize: true get the INT8 model before the bundle is rendered.
        ("quantize", lambda: run_quantize_stage(directory)),
        ("render", lambda: run_render(directory, **render_options)),
        ("validate", lambda: run_validate(directory)),
        *measure.steps(),
    ]


def planned_as(result: dict[str, Any], directory: Path, version: str | None) -> dict[str, Any]:
    """Plan's result, once the spec's version is the one the release directory was named for."""
    if version is not None:
        planned = load_spec(directory).model.version
        if planned != version:
            raise StageError(f"plan decided version {planned}, but the release directory {directory} was named for "
                             f"{version}: this run would file release {planned} under another version's name",
                             [f"run deploy with --out DIR --previous DIR instead, or answer version: {version}"])
    return result


def _write_report(directory: Path, failure: dict[str, Any] | None, completed: list[dict[str, Any]],
                  stage_names: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The report of this run, full when the spec is fresh, else the short one. Never raises."""
    fresh_spec = failure is None or stage_names.index(failure["stage"]) > stage_names.index(SPEC_STAGE)
    if fresh_spec:
        try:
            return run_report(directory, failure=failure), None
        except StageError as exc:  # e.g. a spec the report cannot read: fall back to the short report
            detail = f": {exc.problems[0]}" if exc.problems else ""
            problem = f"the full report could not be written ({exc.message}{detail}); this is the short one"
        except Exception as exc:  # the report must never hide why deploy stopped
            problem = f"the full report could not be written ({type(exc).__name__}: {exc}); this is the short one"
    else:
        problem = None
    # Every stage passed but the full report failed: the short one names the report as what stopped.
    stopped = failure or {"stage": "report", "error": problem or "the full report could not be written"}
    return failure_report(directory, stopped, completed, note=problem), problem


def run_deploy(model: Path, directory: Path, answers: Path | None, levels: list[int], seconds: float, *,
               plugin_root: Path, as_json: bool = False, sample: Path | None = None,
               dims: list[str] | None = None, time_budget_s: float | None = None, force: bool = False,
               previous: Path | None = None, version: str | None = None) -> int:
    """Run every stage; print progress on stderr and the summary on stdout; return the exit code."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in STALE_FILES:
        (directory / name).unlink(missing_ok=True)
    measure = Measure(directory, levels=levels, seconds=seconds)
    steps = deploy_steps(model, directory, answers, measure, plugin_root, sample=sample, dims=dims,
                         time_budget_s=time_budget_s, force=force, previous=previous, version=version)
    names = [name for name, _ in steps] + ["report"]
    total = len(names)
    completed: list[dict[str, Any]] = []
    failure: dict[str, Any] | None = None
    try:
        for index, (stage, work) in enumerate(steps, start=1):
            started = time.perf_counter()
            _say(f"[{index}/{total}] {stage} ...")
            try:
                result = work()
            except (StageError, OSError) as caught:  # an unwritable file is the stage's refusal too
                exc = caught if isinstance(caught, StageError) else io_refusal(stage, caught)
                failure = {"stage": stage, "error": exc.message, "problems": list(exc.problems),
                           "seconds": round(time.perf_counter() - started, 3)}
                _say(f"[{index}/{total}] {stage} failed: {exc}")
                break
            result["seconds"] = round(time.perf_counter() - started, 3)
            completed.append({k: result.get(k) for k in ("stage", "wrote", "seconds", "skipped") if result.get(k) is not None})
            note = f" (skipped: {result['skipped']})" if result.get("skipped") else ""
            _say(f"[{index}/{total}] {stage} done in {result['seconds']:.1f}s{note}")
    finally:
        # The server's measured facts are final: stop it first so server.json says "stopped".
        stopped = measure.close()
        if stopped:
            _say(f"deploy: reference server {stopped}")
    started = time.perf_counter()
    _say(f"[{total}/{total}] report ...")
    report, problem = _write_report(directory, failure, completed, names)
    if problem:
        _say(f"deploy: {problem}")
    report_path = directory / REPORT_FILE
    outcome = (report or {}).get("summary", {}).get("outcome") or ("NO-GO" if failure else "INCOMPLETE")
    if report is not None:
        completed.append({"stage": "report", "wrote": report.get("wrote", []), "seconds": round(time.perf_counter() - started, 3)})
        _say(f"[{total}/{total}] report done in {completed[-1]['seconds']:.1f}s")
    ok = failure is None and outcome != "NO-GO"
    summary: dict[str, Any] = {
        "stage": "deploy",
        "ok": ok,
        "outcome": outcome,
        "directory": str(directory),
        "stages": completed,
        "wrote": [p for r in completed for p in r.get("wrote") or []],
        "report": str(report_path),
    }
    if previous is not None:
        summary["previous"] = str(previous)  # the release this one was planned against (plan --previous)
    if failure is not None:
        summary.update({"failed_stage": failure["stage"], "error": failure["error"], "problems": failure["problems"]})
        summary["completed"] = completed  # the name earlier versions used for the stages that ran
    elif not ok:
        summary["error"] = "; ".join((report or {}).get("summary", {}).get("reasons", [])) or f"outcome {outcome}"
    write_json(directory / DEPLOY_FILE, {**summary, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    summary["wrote"].append(str(directory / DEPLOY_FILE))
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for path in summary["wrote"]:
            print(f"deploy: wrote {path}")
        print(f"deploy: deployment directory {directory}")
        if failure is not None:
            print(f"deploy: stopped at {failure['stage']}: {failure['error']}")
        print(f"deploy: outcome {outcome}")
        print(f"deploy: report {report_path}")
    return 0 if ok else EXIT_REFUSED


def run_quantize_stage(directory: Path) -> dict[str, Any]:
    """The `deploy` step: quantize when the plan says edge + quantize, else say why not.

    A refused INT8 model does not stop `deploy`: quantization.json records why, render ships the
    original model and says so, and the report's quantization row carries the verdict.
    """
    from deploy_model.model.quantize import QUANT_FILE, run_quantize
    from deploy_model.plan.spec import ServingPattern
    from deploy_model.plan.specfile import load_spec, resolve_model

    spec = load_spec(directory)
    if spec.serving.pattern != ServingPattern.edge:
        return {"stage": "quantize", "wrote": [], "skipped": f"{spec.serving.pattern.value} pattern: only edge deployments quantize"}
    if spec.edge is None or not spec.edge.quantize:
        return {"stage": "quantize", "wrote": [], "skipped": "edge deployment answered quantize: false"}
    model = resolve_model(spec, directory)
    try:
        return run_quantize(model, directory)
    except StageError as exc:
        record = directory / QUANT_FILE
        refused = record.is_file() and "INT8 model refused" in exc.message
        if not refused:
            raise
        return {"stage": "quantize", "wrote": [str(record)],
                "skipped": f"{exc.message}; the bundle ships the original model"}
