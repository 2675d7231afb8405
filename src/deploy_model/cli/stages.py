"""The stage verbs: plugins, inspect, plan, serve, smoke, loadtest, report, render, validate,
worker, batch and quantize (`deploy` and `releases` live in cli.releases).

Importing this module registers them on the app of `deploy_model.cli.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deploy_model.bundle.guards import locked
from deploy_model.cli.base import (
    EXIT_CODES,
    PLUGIN_ROOT,
    DimOpt,
    DryRunOpt,
    ForceOpt,
    JsonOpt,
    SampleOpt,
    TimeBudgetOpt,
    app,
    model_argument,
    raise_not_available,
    run_stage,
)
from deploy_model.common.errors import StageError


@app.command("plugins", epilog=EXIT_CODES)
def plugins_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory; writes siblings.json there."),
    root: list[Path] = typer.Option([], "--root", help="Extra folder to search for plugins (repeatable)."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Find sibling Claude Code plugins (marketplace checkout, beside this plugin, ~/.claude/plugins).

    Writes siblings.json: each plugin's name, version, path, commands, skills and the deploy concern
    it helps with. A malformed manifest is reported in `problems`, never fatal.
    """
    from deploy_model.plan.plugins import run_plugins

    run_stage("plugins", as_json, lambda: run_plugins(out, PLUGIN_ROOT, root, dry_run=dry_run))


@app.command("inspect", epilog=EXIT_CODES)
def inspect_cmd(
    model: Path = typer.Argument(..., help="Model file (.onnx; other formats are converted), a name to look up, or a "
                                 "models:/NAME/VERSION or runs:/ID/PATH URI (MLFLOW_TRACKING_URI)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Deployment directory [default: deploy/<model-name>]."),
    runs: int = typer.Option(50, "--runs", min=1, max=10000, help="Timed runs per batch size."),
    large_batch: int = typer.Option(32, "--batch", min=1, max=4096, help="Larger batch size timed when the batch dim is dynamic."),
    sample: Path | None = SampleOpt,
    dim: list[str] = DimOpt,
    time_budget_s: float = TimeBudgetOpt,
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Profile a model into model-profile.json.

    Output: format, bytes, sha256, IR version and opsets per domain, inputs/outputs (name, exact
    ONNX `type` such as tensor(float) or seq(map(string,tensor(float))), numpy `dtype`, shape
    with symbolic dims), op histogram, parameter count (initializers and Constant nodes), onnx
    checker result, `unservable` (why the reference server could not serve the model, empty when
    it can), onnxruntime providers available here, and p50/p95 latency at batch 1 (and --batch
    when the batch dim is dynamic) within --time-budget-s. Latency is measured on --sample when
    given (copied to samples/ and recorded as `sample`), else on synthetic inputs; a model that
    rejects them is recorded as `latency.error`, not a figure. --dim values are recorded as `dims`.
    A missing, corrupt or non-ONNX file, external data outside the model's folder, or a sample
    that does not fit the inputs exits 1 with a message naming what was wrong.
    """
    from deploy_model.model.inspection import run_inspect

    model = model_argument(model, "inspect", as_json)  # @FILE: the user's request as typed; ~ expanded
    run_stage("inspect", as_json, lambda: run_inspect(
        model, out, runs=runs, large_batch=large_batch, dry_run=dry_run, sample=sample, dims=dim,
        time_budget_s=time_budget_s))


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    from deploy_model.plan.answer_sources import set_value

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        values[key.strip()] = set_value(key.strip(), raw)
    return values


def _typed_flags(ctx: typer.Context) -> dict[str, Any]:
    """The answers of the flags the user typed (a flag left at its default gives none)."""
    from deploy_model.plan.answer_sources import flag_answer

    def typed(param: str) -> bool:
        source = ctx.get_parameter_source(param)  # by name: typer ships its own copy of click's enum
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    return {key: value for param, value in ctx.params.items() if (key := flag_answer(param)) is not None and typed(param)}


@app.command("plan", epilog=EXIT_CODES)
def plan_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding model-profile.json; writes deployment.yaml."),
    answers: Path | None = typer.Option(None, "--answers", "-a", help="answers.yaml with the answers to the five questions."),
    name: str | None = typer.Option(None, "--name", help="Deployment name (DNS-1123 label)."),
    target: str | None = typer.Option(None, "--target", help="kubernetes | serverless | edge | compose [default: kubernetes]."),
    traffic: str | None = typer.Option(None, "--traffic", help="realtime | batch | streaming [default: realtime]."),
    rps: float | None = typer.Option(None, "--rps", help="Expected peak requests per second [default: 50]."),
    latency_sla_ms: float | None = typer.Option(None, "--latency-sla-ms", help="p95 latency objective, ms [default: 100]."),
    rollout: str | None = typer.Option(None, "--rollout", help="direct | canary | shadow | blue-green | ab [default: canary]."),
    canary_weight: int | None = typer.Option(None, "--canary-weight", help="First canary step in percent, 1-100 [default: 10]."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | tensorrt [default: auto]."),
    sets: list[str] = typer.Option([], "--set", help="Any answer as KEY=VALUE (repeatable), e.g. --set namespace=ml; "
                                   "over the answers file, under the answer's own flag. A string answer keeps the text "
                                   "as typed (kubernetes_version=1.34 is \"1.34\"); others read it as a YAML scalar."),
    previous: Path | None = typer.Option(
        None, "--previous", help="Deployment directory of the version serving now: it becomes the stable version, the "
        "profiled model the candidate (the same model as its candidate: a promotion). Absent: a first release."),
    stable_version: str | None = typer.Option(None, "--stable-version", help="Model version serving now (instead of --previous)."),
    stable_image: str | None = typer.Option(None, "--stable-image", help="Image reference serving now, with its tag."),
    stable_sha256: str | None = typer.Option(None, "--stable-sha256", help="sha256 of the model serving now."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Apply the decision tree to the profile and the answers; write the validated deployment.yaml.

    Precedence, per answer: a flag typed on the command line > --set KEY=VALUE > the --answers
    file > the default shown (a flag not typed gives nothing, so it never hides --set or the file).
    Every decision is recorded with the rule that made it. Invalid answers exit 1 listing every
    problem at once. With --previous, the deployment keeps the previous release's name, and the
    candidate's version (its image tag: the answer `version`, else the model's metadata) is made
    <version>-<sha256[:12]> when it would equal the stable version of a different model.
    """
    from deploy_model.plan.answer_sources import overrides
    from deploy_model.plan.planner import run_plan

    given = overrides(_parse_sets(sets), _typed_flags(ctx))
    run_stage("plan", as_json, lambda: run_plan(out, answers, given, dry_run=dry_run, previous=previous))


# --- serve, smoke, loadtest, report (measure and report) --------------------------------------

UrlOpt = typer.Option(None, "--url", help="Server base URL [default: the running server recorded in server.json].")
ServiceOpt = typer.Option(None, "--service", help="Instead of --url: this Service of the cluster (`-`: the deployment's own) "
                          "through a port-forward of the kubernetes client (one pod, via the API server: load figures are "
                          "indicative only); --kubeconfig / --context pick the cluster.")
KubeconfigUrlOpt = typer.Option(None, "--kubeconfig", help="With --service: kubeconfig file [default: $KUBECONFIG, ~/.kube/config].")
ContextUrlOpt = typer.Option(None, "--context", help="With --service: kubeconfig context [default: the current one].")


@app.command("serve", epilog=EXIT_CODES)
def serve_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding deployment.yaml; writes server.json and server.log."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Loopback port [default: a free one]."),
    device: str | None = typer.Option(None, "--device", help="Override the spec's device: auto | cpu | cuda | tensorrt."),
    detach: bool = typer.Option(False, "--detach", help="Leave the server running in the background and return once ready."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server recorded in server.json (SIGTERM, then SIGKILL after 15 s)."),
    ready_timeout: float | None = typer.Option(
        None, "--ready-timeout", min=1, max=3600,
        help="Seconds to wait for /v2/health/ready [default: derived from model-profile.json: 15 s + 2 x load + "
             "the server's warm-up budget + one largest warm-up batch, at least 60 s and at most 900 s; the load is "
             "the profile's when recorded, else 1 s + 1 s per 100 MB; the warm-up budget, passed as "
             "--warmup-budget-s, is 1.5 x the profile's latency summed over the warm-up batch sizes + 5 s, "
             "within 30..120 s]."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Run the reference ONNX server (python -m onnxserve) for the spec on 127.0.0.1.

    Waits until /v2/health/ready answers 200 (for as long as --ready-timeout says), then writes
    server.json (pid, url, port, log, the provider really in use); a wait that runs out names the
    figures it used and shows the server's last log lines. Without --detach it serves until Ctrl-C
    and then stops the server.
    --dry-run prints the command line only. A model or device the server refuses exits 1 with the
    end of its log.
    """
    from deploy_model.measure.serve import run_serve

    run_stage("serve", as_json, lambda: run_serve(out, port, device, detach, stop, ready_timeout, dry_run=dry_run))


@app.command("smoke", epilog=EXIT_CODES)
def smoke_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding model-profile.json; writes smoke.json."),
    url: str | None = UrlOpt,
    service: str | None = ServiceOpt,
    kubeconfig: Path | None = KubeconfigUrlOpt,
    context: str | None = ContextUrlOpt,
    model_name: str | None = typer.Option(None, "--model-name", help="Name in /v2/models/{name} [default: from server.json or the spec]."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, max=300, help="Per-request timeout, seconds."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Smoke-test a running server: live, ready, metadata vs the profile, inference (on the sample
    given to inspect, else synthetic inputs), invalid requests refused with 4xx, /health, /metrics.

    Every check is listed with pass/fail and its time in smoke.json (written on failure too, so the
    failing check can be read). Exits 1 naming the failing checks.
    """
    from deploy_model.cluster.portforward import through_service
    from deploy_model.measure.smoke import run_smoke

    run_stage("smoke", as_json, lambda: through_service(
        out, service, kubeconfig, context, url, lambda u: run_smoke(out, u, model_name, timeout, dry_run=dry_run)))


@app.command("loadtest", epilog=EXIT_CODES)
def loadtest_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory; writes loadtest.json and loadtest.png."),
    url: str | None = UrlOpt,
    service: str | None = ServiceOpt,
    kubeconfig: Path | None = KubeconfigUrlOpt,
    context: str | None = ContextUrlOpt,
    concurrency: str = typer.Option("1,4,16", "--concurrency", "-c", help="Closed-loop levels, comma-separated (1-512); with --rate: the most requests in flight."),
    seconds: float = typer.Option(2.0, "--seconds", "-s", help="Seconds per level (at most 600)."),
    rate: float | None = typer.Option(None, "--rate", help="Open loop instead: this many requests/s for --seconds, latency from each due time."),
    batch: int = typer.Option(1, "--batch", help="Rows per request (needs a dynamic batch dim above 1)."),
    max_requests: int = typer.Option(200_000, "--max-requests", min=1, max=200_000, help="Cap on requests per level."),
    min_requests: int = typer.Option(100, "--min-requests", min=1, max=200_000, help="Each level runs past --seconds until it has this many requests, for at most 30 s (or --seconds when longer): a slow model is not judged on a few requests."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, max=300, help="Per-request timeout, seconds."),
    model_name: str | None = typer.Option(None, "--model-name", help="Name in /v2/models/{name} [default: from server.json or the spec]."),
    no_chart: bool = typer.Option(False, "--no-chart", help="Skip the PNG chart."),
    enforce_sla: bool = typer.Option(False, "--enforce-sla", help="Exit 1 when the verdict is no-go."),
    engine: str = typer.Option("auto", "--engine", help="python (httpx threads; --max-requests and --rate apply) | wrk (closed loop, little client CPU, so the server is measured) | auto (wrk when installed, python for --rate)."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Load-test the V2 infer endpoint of the URL given (and nothing else) with the sample given
    to inspect (synthetic inputs when there is none).

    Reports requests/s, p50/p95/p99/max latency and errors by status per level, and the verdict:
    one replica against the p95 SLA and its share of the target (target requests/s over the
    planned replicas), with the replicas the measured capacity implies; draws loadtest.png. A live progress line goes
    to stderr. Bounded by --seconds and --max-requests per level and --timeout per request; a level
    short of --min-requests (default 100) runs on for at most 30 s (or --seconds when longer). A
    percentile from fewer answers than it needs (p95: 20) is shown as too few samples, never as a
    figure, and a verdict with no level to judge on says "not enough requests to judge".
    """
    from deploy_model.cluster.portforward import through_service
    from deploy_model.measure.loadtest import parse_levels, run_loadtest

    def work() -> dict[str, Any]:
        result = through_service(out, service, kubeconfig, context, url, lambda u: run_loadtest(
            out, u, levels=parse_levels(concurrency), seconds=seconds, rate=rate, batch=batch,
            max_requests=max_requests, timeout_s=timeout, model_name=model_name, chart=not no_chart, dry_run=dry_run,
            engine=engine, min_requests=min_requests,
        ))
        verdict = result["result"]["verdict"]
        if enforce_sla and not verdict["go"]:
            raise StageError(f"load test verdict no-go: {verdict['reason']}")
        return result

    run_stage("loadtest", as_json, work)


@app.command("report", epilog=EXIT_CODES)
def report_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory; writes DEPLOYMENT.md."),
    summary: bool = typer.Option(False, "--summary", help="Then print the short JSON summary (see `summary`) instead of the file list."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Write DEPLOYMENT.md, the standard deployment report, from the stage files present.

    Configuration, infrastructure, serving endpoint with curl and Python examples, monitoring,
    measured results and go/no-go, rollout plan and rollback with exact commands, validation,
    next steps and sibling plugins. Stage files that are absent are named in the report.
    """
    from deploy_model.report.writer import run_report

    if summary and not dry_run:  # the agent reads this, not the whole report
        from deploy_model.cli.agent import print_summary

        run_stage("report", False, lambda: {**run_report(out), "wrote": [], "summary": None})
        print_summary(out)
        return
    run_stage("report", as_json, lambda: run_report(out, dry_run=dry_run))


@app.command("render", epilog=EXIT_CODES)
def render_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding deployment.yaml; the bundle is written there."),
    image_digest: str | None = typer.Option(
        None, "--image-digest", help="Digest (sha256:...) of the built and pushed image: the candidate's workloads pull repo:tag@digest."),
    stable_image_digest: str | None = typer.Option(
        None, "--stable-image-digest", help="Digest (sha256:...) of the stable release's image, for a bundle running two versions."),
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Render the deployment bundle from deployment.yaml (templates/bundle/).

    Writes Dockerfile (+ Dockerfile.gpu for cuda/tensorrt), .dockerignore, requirements.lock,
    compose.yaml, k8s/*.yaml, monitoring/* (scrape config, alert rules and their promtool unit
    tests, PrometheusRule, ServiceMonitor, Grafana dashboard), batch/* for the batch pattern,
    ci/validate.yml, server/ (the reference server), model/ and manifest.json (every file with
    its sha256). Everything is rendered first and moved into place only on success. Files in
    --out that no previous render wrote (not in manifest.json) are never replaced without
    --force; a second render or deploy into the same --out at once is refused.
    """
    from deploy_model.bundle.render import run_render

    pins = {"image_digest": image_digest, "stable_image_digest": stable_image_digest}
    run_stage("render", as_json, lambda: run_render(out, dry_run=True, **pins) if dry_run else locked(
        out, "render", lambda: run_render(out, force=force, **pins)))


@app.command("validate", epilog=EXIT_CODES)
def validate_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory holding the rendered bundle; writes validation.json."),
    strict: bool = typer.Option(False, "--strict", help="A validator whose tool is missing fails instead of being skipped (use in CI)."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Prove the bundle with the real validator of each ecosystem; write validation.json.

    kubernetes-validate (strict, the spec's Kubernetes version), structural checks of custom
    resources (Rollout, AnalysisTemplate, HTTPRoute, VirtualService, ServiceMonitor,
    PrometheusRule), a hardening catalogue after kube-score / kube-linter / checkov rules,
    hadolint, the compose-spec and GitHub-workflow schemas, promtool check config / check rules /
    test rules, lock-file pins and the manifest's sha256s. validation.json lists every check
    (written also when checks fail); exits 1 naming the failing checks. A validator that
    inspects no file fails.
    """
    from deploy_model.bundle.validate import run_validate

    run_stage("validate", as_json, lambda: run_validate(out, strict=strict, dry_run=dry_run))


@app.command(
    "worker",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    epilog=EXIT_CODES,
)
def worker_cmd(ctx: typer.Context) -> None:
    """Event-driven inference: score requests from a Redis Stream (see `worker --help`).

    The same code is the container entry point of the rendered worker Deployment
    (`python -m onnxserve.worker`); all arguments are passed through to it.
    """
    try:
        from onnxserve.worker.__main__ import main as worker_main
    except ImportError as exc:
        raise_not_available("worker", f"needs the reference server package with its worker extra: {exc}", False)
    raise typer.Exit(worker_main(list(ctx.args)))


@app.command(
    "batch",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    epilog=EXIT_CODES,
)
def batch_cmd(ctx: typer.Context) -> None:
    """Batch inference over files: resumable, exactly-once, rejects kept (see `batch --help`).

    The same code is the container entry point of the rendered Job/CronJob and Prefect flow
    (`python -m onnxserve.batch`); all arguments are passed through to it.
    """
    from deploy_model.cli.batching import run_batch_cli

    raise typer.Exit(run_batch_cli(list(ctx.args), ctx.command_path))


@app.command("quantize", epilog=EXIT_CODES)
def quantize_cmd(
    model: Path | None = typer.Argument(None, help="Model file (.onnx). Required, unless --out DIR holds the model-profile.json of `inspect`: then its model."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Deployment directory [default: deploy/<model-name>]: quantized/<stem>.int8.onnx when accepted, quantization.json always; its model-profile.json sample is used when it profiles this model."),
    sample: Path | None = typer.Option(None, "--sample", help="Real inputs the INT8 model is judged on (.npz keyed by input name, .npy for one input, or a V2 request .json)."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Representative inputs (file or folder: .npy/.npz/.parquet/.csv/.jsonl, mapped like `batch`): static INT8, and the inputs compared when no --sample."),
    mode: str = typer.Option("auto", "--mode", help="auto (static with --calibration, else dynamic) | dynamic | static."),
    max_disagreement: float = typer.Option(0.01, "--max-disagreement", help="Most disagreement allowed (fraction): top-1 class on class-score outputs, exact value on label/integer outputs."),
    max_relative_error: float = typer.Option(0.05, "--max-relative-error", help="Most mean absolute difference allowed on other float outputs, as a fraction of the output's standard deviation."),
    allow_slower: bool = typer.Option(False, "--allow-slower", help="Accept an INT8 model slower than the original (p50 at batch 1 or at a larger batch) for its size alone."),
    class_outputs: list[str] = typer.Option([], "--class-output", help="Output whose last axis holds class scores (e.g. CTC logits), compared by top-1 (repeatable); probabilities and ZipMap are found on their own."),
    samples: int = typer.Option(1000, "--samples", min=1, max=100_000, help="Most rows compared (feeds, for a model without a batch dim); a large model compares fewer, by its size in bytes, never by a timing."),
    runs: int = typer.Option(200, "--runs", min=1, max=100_000, help="Most timed runs per model and batch size for the p50s."),
    time_budget: float = typer.Option(60.0, "--time-budget", min=1.0, max=3600.0, help="Seconds for timing both models (runs stop there). The rows compared do not depend on it; quantizing itself is not counted."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Quantize to INT8 (onnxruntime) for edge devices, and keep it only if it agrees and is no slower.

    Judges both models on the same inputs (--sample, the deployment directory's recorded sample,
    --calibration, else synthetic ones with a warning): file size; p50 latency at batch 1 and at
    batch 32 when the batch dim is dynamic (one thread); per output, top-1 agreement along the
    class axis for probabilities/logits/ZipMap, exact agreement for labels and integers, and mean
    absolute difference over the output's spread for other floats. Refused (exit 1, the original
    kept, no INT8 file written, the numbers in the message and in quantization.json) above the
    thresholds, when the INT8 model is slower (unless --allow-slower), fails to run, or nothing was
    quantized; the refusal names every criterion that failed, and quantization.json records each
    criterion's figure and verdict. An output type with no comparison is named and refused before
    quantizing.

    The agreement figure depends on the model and its inputs only, not on the host's speed or
    load: rows are compared in chunks of at most 256 within 32 MiB of inputs and outputs, at most
    --samples of them, fewer for a large model (10 GB / its size in bytes, and 1 GiB of inputs and
    outputs per model, at least 16). Only the timing is bounded by --time-budget.
    """
    from deploy_model.model.inspection import PROFILE_FILE
    from deploy_model.model.quantize import run_quantize

    if model is None and (out is None or not (out / PROFILE_FILE).is_file()):
        where = f"{out} has no {PROFILE_FILE}" if out is not None else "no --out DIR with a model-profile.json either"
        raise typer.BadParameter(f"MODEL (the .onnx file) is required ({where})", param_hint="MODEL")
    run_stage("quantize", as_json, lambda: run_quantize(
        model, out, calibration, mode, max_disagreement, max_relative_error, samples, runs, dry_run=dry_run,
        sample=sample, allow_slower=allow_slower, time_budget=time_budget, class_outputs=tuple(class_outputs)))
