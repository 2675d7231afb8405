"""Verbs of an A/B experiment after go-live: experiment plan|status|analyze.

Registered on the typer app of cli.base (cli.main imports this module). They read payload logs
and a labels file; only --out writes (experiment.json into the deployment directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deploy_model.cli.base import JsonOpt, app, run_stage
from deploy_model.common.errors import StageError

EXPERIMENT_EXIT_CODES = ("Exit codes: 0 done (whatever the verdict); 1 the input was checked and refused "
                         "(the message names what was wrong and what was expected; nothing written); 2 usage error.")
experiment_app = typer.Typer(
    help="A/B experiments: plan the sample size and duration, then judge B against A from the payload log and "
    "the labels (accuracy, error) or the logged latencies and statuses (latency: the statistical canary "
    "judgement). The verdict uses an always-valid sequential p-value (mSPRT), so it may be asked for every hour. "
    + EXPERIMENT_EXIT_CODES,
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

PayloadsOpt = typer.Option(..., "--payloads", help="Payload log: a JSON Lines file or a folder of them (repeatable).")
LabelsOpt = typer.Option(None, "--labels", help="Ground truth: CSV (request_id,label), JSON Lines "
                         "({\"request_id\", \"label\"}) or a payload log holding feedback records, joined to the "
                         "log by request id [default: the payload log's own feedback records, when it has some].")
MetricOpt = typer.Option("accuracy", "--metric", help="accuracy (classifier), error (regressor: |prediction - label|) "
                         "or latency (canary judgement: Mann-Whitney on latency, two proportions on errors).")
AlphaOpt = typer.Option(0.05, "--alpha", help="False-positive rate of the verdict.")
MdeOpt = typer.Option(None, "--mde", help="Minimum detectable effect, absolute in the metric's units (0.02 = two "
                      "points of accuracy): scales the sequential test and allows a 'no difference' verdict.")
ControlOpt = typer.Option(None, "--control", help="Arm A: a track or model version [default: track stable, "
                          "or the lower of two versions].")
TreatmentOpt = typer.Option(None, "--treatment", help="Arm B [default: the other track, or the higher version].")
LookOpt = typer.Option(1.0, "--look-every-h", min=0.0, help="Hours between the looks the sequential test replays.")
OutputOpt = typer.Option(None, "--output", help="The model output holding the answer [default: the label output, "
                         "else the argmax of the probabilities, else the one value per row].")
OutOpt = typer.Option(None, "--out", "-o", help="Deployment directory: writes experiment.json there.")


@experiment_app.command("plan", epilog=EXPERIMENT_EXIT_CODES)
def plan_cmd(
    traffic_rps: float = typer.Option(..., "--traffic-rps", help="Expected requests per second over both arms."),
    mde: float = typer.Option(..., "--mde", help="Minimum detectable effect, absolute (0.02 on a 0.90 rate: 0.90 -> 0.92)."),
    baseline: float | None = typer.Option(None, "--baseline", help="The control's rate (accuracy), for a proportion metric."),
    stdev: float | None = typer.Option(None, "--stdev", help="The metric's standard deviation, for a mean metric (error)."),
    alpha: float = AlphaOpt,
    power: float = typer.Option(0.8, "--power", help="Chance of detecting an effect of the MDE."),
    split: float = typer.Option(0.5, "--split", help="The candidate's (B's) share of traffic, in (0, 1)."),
    labelled: float = typer.Option(1.0, "--labelled-fraction", help="Share of requests logged and labelled."),
    as_json: bool = JsonOpt,
) -> None:
    """Sample size per arm and duration at the expected traffic (fixed-horizon two-sided z-test).

    The sequential test analyze uses is valid at every look but needs more data than this to reach
    the same power; treat the duration as the least the experiment runs.
    """
    from deploy_model.experiment.sample_size import estimate

    def work() -> dict[str, Any]:
        try:
            size = estimate(traffic_rps=traffic_rps, mde=mde, alpha=alpha, power=power, split=split,
                            baseline=baseline, stdev=stdev, labelled_fraction=labelled)
        except ValueError as exc:
            raise StageError(f"cannot size the experiment: {exc}") from None
        doc = size.as_dict()
        return {"stage": "experiment plan", **doc,
                "summary": {"per arm": f"A {size.n_a}, B {size.n_b} labelled requests",
                            "duration": f"{doc['duration_hours']} h ({doc['duration_days']} days) at {traffic_rps:g} req/s"
                            + (f", {labelled:.0%} labelled" if labelled < 1 else ""),
                            "effect size": f"{size.effect_size:.4f} ({'Cohen h' if size.metric == 'rate' else 'Cohen d'})"}}

    run_stage("experiment plan", as_json, work)


def _run(verb: str, payloads: list[Path], labels: Path | None, metric: str, alpha: float, mde: float | None,
         control: str | None, treatment: str | None, look_every_h: float, output: str | None, out: Path | None,
         as_json: bool) -> None:
    from deploy_model.experiment.analyze import analyze, decision
    from deploy_model.experiment.labels import read_labels
    from deploy_model.experiment.payloads import read_payloads
    from deploy_model.experiment.record import summary_lines, write_experiment

    def work() -> dict[str, Any]:
        if out is not None and not out.is_dir():
            raise StageError(f"--out {out} is not a deployment directory (expected an existing folder)")
        log = read_payloads(payloads)
        truth = read_labels(labels) if labels is not None else None
        if truth is None and log.feedback and metric != "latency":  # the server's feedback endpoint
            truth = read_labels(*map(Path, log.files))
        result = analyze(log, truth, metric=metric, alpha=alpha, mde=mde, control=control, treatment=treatment,
                         look_every_s=look_every_h * 3600, output=output)
        if verb == "status":
            result["decision"] = decision(result)
        wrote = [str(write_experiment(out, verb, result))] if out is not None else []
        return {"stage": f"experiment {verb}", **result, "wrote": wrote, "summary": summary_lines(result)}

    run_stage(f"experiment {verb}", as_json, work)


@experiment_app.command("analyze", epilog=EXPERIMENT_EXIT_CODES)
def analyze_cmd(payloads: list[Path] = PayloadsOpt, labels: Path | None = LabelsOpt, metric: str = MetricOpt,
                alpha: float = AlphaOpt, mde: float | None = MdeOpt, control: str | None = ControlOpt,
                treatment: str | None = TreatmentOpt, look_every_h: float = LookOpt, output: str | None = OutputOpt,
                out: Path | None = OutOpt, as_json: bool = JsonOpt) -> None:
    """The verdict: B better / B worse / no difference / inconclusive, with effect, intervals, p-values, n per arm.

    The verdict follows the always-valid (mSPRT) p-value replayed over the looks; the fixed-horizon
    test (two proportions for accuracy, Welch for error) is printed beside it.
    """
    _run("analyze", payloads, labels, metric, alpha, mde, control, treatment, look_every_h, output, out, as_json)


@experiment_app.command("status", epilog=EXPERIMENT_EXIT_CODES)
def status_cmd(payloads: list[Path] = PayloadsOpt, labels: Path | None = LabelsOpt, metric: str = MetricOpt,
               alpha: float = AlphaOpt, mde: float | None = MdeOpt, control: str | None = ControlOpt,
               treatment: str | None = TreatmentOpt, look_every_h: float = LookOpt, output: str | None = OutputOpt,
               out: Path | None = OutOpt, as_json: bool = JsonOpt) -> None:
    """An interim look: analyze plus the decision (stop: boundary crossed / continue: share of the planned sample)."""
    _run("status", payloads, labels, metric, alpha, mde, control, treatment, look_every_h, output, out, as_json)
