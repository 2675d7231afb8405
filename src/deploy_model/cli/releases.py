"""The verbs over a whole deployment: `deploy` (every stage in order, into one directory or the
next release's) and `releases` (what a deployment root holds and where the next release goes).

Importing this module registers them on the app of `deploy_model.cli.base`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from deploy_model.bundle.guards import hold, io_refusal
from deploy_model.cli.base import (
    EXIT_CODES,
    PLUGIN_ROOT,
    DimOpt,
    ForceOpt,
    JsonOpt,
    SampleOpt,
    TimeBudgetOpt,
    _say,
    app,
    model_argument,
)
from deploy_model.common.errors import StageError


@app.command("deploy", epilog=EXIT_CODES)
def deploy_cmd(
    model: Path = typer.Argument(..., help="Model file, a name to look up, or a models:/NAME/VERSION or runs:/ID/PATH URI."),
    answers: Path | None = typer.Option(None, "--answers", "-a", help="answers.yaml (see `plan --help`)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Deployment directory [default: deploy/<model-name>]."),
    concurrency: str = typer.Option("1,4,16", "--concurrency", help="Load-test levels (see `loadtest --help`)."),
    seconds: float = typer.Option(2.0, "--seconds", help="Load-test seconds per level."),
    sample: Path | None = SampleOpt,
    dim: list[str] = DimOpt,
    time_budget_s: float = TimeBudgetOpt,
    force: bool = ForceOpt,
    previous: Path | None = typer.Option(
        None, "--previous", help="Deployment directory of the release serving now, passed to plan (see `plan --help`): "
                                 "this model is planned as the next release against it."),
    release_of: Path | None = typer.Option(
        None, "--release-of", help="Deployment root (deploy/<name>) of a release layout: plan against the release "
                                   "deployed last (its `current` record, else the newest rendered release) and write "
                                   "to <root>/releases/<version> (<version>-2, -3 ... when a successful run of that "
                                   "version holds it); not with --out or --previous."),
    as_json: bool = JsonOpt,
) -> None:
    """Run every stage in order: plugins -> inspect -> plan -> quantize -> render -> validate -> serve
    -> smoke -> loadtest -> report, and print the path of DEPLOYMENT.md.

    Serve starts the reference server on a free loopback port; it is always stopped at the end,
    also when a stage fails. Batch, event-driven and edge patterns have no request path: serve,
    smoke and loadtest are skipped and the report says why. Prints one progress line per stage on
    stderr. --sample is checked and copied into the deployment directory by inspect, then feeds
    every later stage. A failing stage stops the run and leaves the files of the stages before
    it; the report is written in every case and says where the run stopped and why (deploy.json
    holds the same as JSON). Exits 1 when a stage failed or the outcome is NO-GO.

    Releases: --previous DIR plans this model as the next release against DIR (same deployment
    name, its own version and image tag, the answered rollout against DIR's version). --release-of
    deploy/<name> keeps one directory per release, deploy/<name>/releases/<version>, so the
    release serving now stays intact for a rollback: it plans against the release applied last and,
    when the run succeeds, records the new one in deploy/<name>/current. See `releases`.
    """
    from deploy_model.cli.pipeline import run_deploy
    from deploy_model.measure.loadtest import parse_levels
    from deploy_model.model.inspection import deployment_name

    try:
        levels = parse_levels(concurrency)
    except StageError as exc:
        raise typer.BadParameter(exc.message, param_hint="--concurrency") from None
    from deploy_model.model.convert.mlflow_registry import uri_deployment_name

    model = model_argument(model, "deploy", as_json)  # a name is looked up; a models:/ or runs:/ URI kept
    version = None
    if release_of is not None:
        if out is not None or previous is not None:
            raise typer.BadParameter("--release-of chooses the directory and the release to plan against itself: "
                                     "drop --out and --previous (or use those two without it)", param_hint="--release-of")
        from deploy_model.cli.release_target import next_release

        try:
            target = next_release(model, answers, release_of)
        except (StageError, OSError) as caught:
            _refused("deploy", caught, as_json)
        out, previous, version = target.out, target.previous, target.version
        _say(f"deploy: release {version} of {release_of} in {out}, planned against "
             f"{previous if previous is not None else 'no earlier release'} ({target.why})")
    directory = out or Path("deploy") / (uri_deployment_name(str(model)) if str(model).startswith(("models:/", "runs:/"))
                                         else deployment_name(model))
    try:
        lock = hold(directory, "deploy", force)  # one writer per --out; the user's files kept unless --force
    except (StageError, OSError) as caught:  # an unwritable --out is a refusal, not an internal error
        _refused("deploy", caught, as_json)
    try:
        code = run_deploy(model, directory, answers, levels, seconds, plugin_root=PLUGIN_ROOT, as_json=as_json,
                          sample=sample, dims=dim, time_budget_s=time_budget_s, force=force, previous=previous,
                          version=version)
    finally:
        lock.release()
    if release_of is not None and version is not None:
        if code:
            _say(f"deploy: {release_of / 'current'} left as it was: release {version} did not succeed")
        else:
            from deploy_model.plan.release_layout import write_current

            _say(f"deploy: wrote {write_current(release_of, directory.name)} (release {version} is current: "
                 "the next release is planned against it)")
    if code:
        raise typer.Exit(code)


def _refused(stage: str, caught: StageError | OSError, as_json: bool) -> NoReturn:
    """A refusal before any stage ran: its message on stderr (and as JSON), its exit code."""
    exc = caught if isinstance(caught, StageError) else io_refusal(stage, caught)
    _say(f"{stage}: error: {exc}")
    if as_json:
        print(json.dumps({"stage": stage, "ok": False, "error": exc.message, "problems": exc.problems}, indent=2))
    raise typer.Exit(exc.exit_code) from None


@app.command("releases", epilog=EXIT_CODES)
def releases_cmd(
    root: Path = typer.Option(..., "--root", help="Deployment root of a release layout (deploy/<name>)."),
    next_model: Path | None = typer.Option(
        None, "--next", help="A new model (.onnx or @FILE): also say where its release goes (`next`: version, out, "
                             "previous), as `deploy --release-of` would choose, for running the stages one by one."),
    answers: Path | None = typer.Option(None, "--answers", "-a", help="answers.yaml, when it answers version (with --next)."),
    as_json: bool = JsonOpt,
) -> None:
    """List the releases of a deployment root and the one deployed last; reads files only, never the cluster.

    Each release: its version and directory, its mode (first, candidate, promoted), its strategy,
    the version serving once its bundle is applied and its candidate, whether its bundle is
    rendered, and its deploy outcome. `current` is the release `deploy --release-of` plans the next
    one against: deploy/<name>/current, else the newest release with a rendered bundle (a root
    written before the layout counts as the release in it; a root not there yet has no release).
    Every key is present in --json (null when there is none). With --next MODEL, `next` says where
    that model's release goes: its version, its directory (--out of every stage) and the release
    to plan it against (plan --previous; null for release 1).
    """
    from deploy_model.cli.release_target import next_release
    from deploy_model.plan.release_layout import list_releases

    model = model_argument(next_model, "releases", as_json) if next_model is not None else None
    try:
        result = list_releases(root)
        if model is not None:
            target = next_release(model, answers, root)
            result["next"] = {"version": target.version, "out": str(target.out),
                              "previous": str(target.previous) if target.previous is not None else None}
    except (StageError, OSError) as caught:
        _refused("releases", caught, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    for release in result["releases"]:
        role = (f"candidate by {release['strategy']} beside stable {release['stable_version']}"
                if release["candidate"] else f"{release['mode']} ({release['strategy']})")
        mark = "  <- current" if release["directory"] == result["current_directory"] else ""
        print(f"{release['version']}  {release['directory']}  {role}  outcome {release['outcome'] or 'none'}{mark}")
    if result["current"] is None:
        print(f"releases: {result['current_rule']}")
    else:
        print(f"releases: current {result['current']} ({result['current_rule']}); serving {result['serving']}"
              + (f", candidate {result['candidate']}" if result["candidate"] else ""))
    if "next" in result:
        nxt = result["next"]
        print(f"releases: next {nxt['version']} in {nxt['out']}, planned against {nxt['previous'] or 'no earlier release'}")
