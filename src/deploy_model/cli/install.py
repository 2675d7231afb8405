"""The `install` verb: a launcher group (a converter's framework) installed in the background, polled within a budget.

Importing this module registers it on the app of `deploy_model.cli.base`.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import typer

from deploy_model.cli.base import PLUGIN_ROOT, JsonOpt, app, model_argument, run_stage
from deploy_model.common.errors import StageError

INSTALL_EXIT_CODES = (
    "Exit codes: 0 the group is installed; 1 refused (an unknown group or model) or the install "
    "failed (its log's end is printed); 2 usage error; 4 still installing in the background: run "
    "the same command again."
)
DEFAULT_WAIT_S = 90.0  # inside Claude Code's 2-minute Bash timeout, with room to start and print


@app.command("install", epilog=INSTALL_EXIT_CODES)
def install_cmd(
    target: str = typer.Argument(..., metavar="GROUP|MODEL",
                                 help="A group of requirements/ (convert-torch, convert-tf, ...) or a model (path, "
                                      "@request file, models:/ URI): the group of its converter."),
    wait_s: float = typer.Option(DEFAULT_WAIT_S, "--wait", min=0, help="Seconds to wait for the install in this call."),
    status: bool = typer.Option(False, "--status", help="Only say where the install stands; start nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Install the packages a converter needs, in the background, without outliving one Bash call.

    A framework such as torch or tensorflow is hundreds of MB to GBs: this starts the launcher's
    installer detached (log in the plugin's data directory, `deploy-model --where`), prints its
    download size and progress on stderr, and waits at most --wait seconds. Run it again (it picks
    the same install up) until it exits 0; then convert or inspect the model. --status only reports.
    """
    run_stage("install", as_json, lambda: run_install(target, wait_s, status))


def group_of(target: str) -> tuple[str | None, str]:
    """(the launcher group a target needs or None when it needs none, what the target is)."""
    from deploy_model.model.convert.registry import converter_for
    from deploy_model.model.convert.sources import detect_source, is_uri

    requirements = PLUGIN_ROOT / "requirements"
    if (requirements / f"{target}.txt").is_file() and target != "uv":
        return target, f"group {target}"
    if target.startswith("convert-") and not Path(target).exists():
        groups = sorted(p.stem for p in requirements.glob("*.txt") if p.stem != "uv")
        raise StageError(f"unknown group {target!r}; expected one of {', '.join(groups)}, or a model path")
    location: str | Path = target if is_uri(target) else model_argument(Path(target), "install", False)
    source = detect_source(location)
    if source.is_onnx:
        return None, f"{location} (ONNX: served as it is, no converter)"
    return converter_for(source.format).group, f"{location} ({source.label})"


def _installed_here(group: str) -> bool:
    """Outside the launcher: the group's converter packages are importable by this interpreter."""
    from deploy_model.model.convert.registry import CONVERTERS

    packages = {p for e in CONVERTERS.values() if e.group == group for p in e.packages}
    if not packages:
        return False
    try:
        for package in packages:
            metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def run_install(target: str, wait_s: float, status: bool) -> dict[str, Any]:
    from deploy_model.common import background_install as bg

    group, what = group_of(target)
    result: dict[str, Any] = {"stage": "install", "ok": True, "target": what, "group": group}
    if group is None:
        return {**result, "state": "ready", "summary": {"state": "ready", "note": f"{what}: nothing to install"}}
    env = bg.LauncherEnv.current()
    if env is None:
        if _installed_here(group):
            return {**result, "state": "ready",
                    "summary": {"group": group, "state": "ready", "note": "its packages are installed in this environment"}}
        raise StageError(f"{group} is not installed and this interpreter is not the launcher's venv "
                         f"(bin/deploy-model installs groups); install it yourself: pip install 'yzmir-ml-production[{group}]'")
    if not env.requirements.joinpath(f"{group}.txt").is_file():
        raise StageError(f"unknown group {group!r}; expected one of {', '.join(env.groups())}")
    current = bg.state(env, group) if status else bg.wait(env, group, wait_s, bg.say_stderr)
    if current == "failed":
        raise bg.failed(env, group)
    if current == "installing":
        raise bg.still_installing(env, group, "convert the model")
    if current == "absent":
        raise StageError(f"{group} is not installed and no install of it has run; `deploy-model install {group}` starts it")
    return {**result, "state": current, "log": str(env.log(group)),
            "summary": {"group": group, "state": "ready", "log": str(env.log(group))}}
