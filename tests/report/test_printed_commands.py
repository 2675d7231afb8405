"""Every command printed for a person or an agent to paste keeps a hostile path one inert argument.

The model file, the sample, the stable model and every --out directory below carry shell syntax
(`$(touch PWNED)`, `;`, backticks, both quotes). For each printed command line (the bash blocks
and inline commands of DEPLOYMENT.md, the `commands` of the rollout and rollback steps, the line
`serve --dry-run` prints) the test checks with shlex.split that each such path arrives as exactly
one word, then runs the line with bash where every program it names is a stub that records its
argv: nothing may be executed (no PWNED file) and each stub must get the same words.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deploy_model.bundle.render import run_render
from deploy_model.measure.trial_models import trial_models
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.plan.specfile import load_spec
from deploy_model.report.bundle_contents import service_name
from deploy_model.report.rollout_commands import rollback_steps, rollout_steps
from deploy_model.report.writer import REPORT_FILE, display_path, run_report

REPO = Path(__file__).resolve().parents[2]
MARK = "PWNED"
HOSTILE = f"$(touch {MARK});x`touch {MARK}`'q\""
# Every program a printed line names: each becomes a stub that records its argv and does nothing.
PROGRAMS = ("curl", "kubectl", "deploy-model", "docker", "grpcurl", "ssh", "scp", "mkdir", "cp", "cat", "tail",
            "python", "python3")
# What a printed word may add to one of the paths: a folder or file below it, or the sibling directory
# a step creates (`-next`, `-promoted`, `-migrate`); `@` (curl's file body) or `DEVICE:` before it.
PREFIXES = ("@", "DEVICE:")
SUFFIX = re.compile(r"(-(next|promoted|migrate))?(/[\w.-]+)*/?")
# (directory, answers, previous release's directory): a canary with a previous release, a migration of
# layout, the other strategies and patterns, and a model whose example request goes to a file.
RELEASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("first", {"rollout": "canary"}, None),
    ("canary", {"rollout": "canary", "canary_mechanism": "gateway-api"}, "first"),
    ("argo", {"rollout": "canary", "canary_mechanism": "argo-rollouts"}, "first"),
    ("blue-green", {"rollout": "blue-green"}, "first"),
    ("nginx", {"rollout": "canary", "canary_mechanism": "ingress-nginx", "protocol": "grpc"}, "first"),
    ("shadow", {"rollout": "shadow", "shadow_mechanism": "in-process"}, "first"),
    ("kserve", {"target": "serverless", "serverless_mechanism": "kserve", "rollout": "canary", "latency_sla_ms": 500}, "first"),
    ("batch", {"traffic": "batch", "latency_sla_ms": 5000}, "first"),
    ("streaming", {"traffic": "streaming", "latency_sla_ms": 2000}, "first"),
    ("edge", {"target": "edge"}, None),
]


def _versioned(model: Path, version: str, out: Path) -> Path:
    """The same network saved as another model version, under a hostile file name."""
    import onnx

    proto = onnx.load(str(model))
    props = {p.key: p for p in proto.metadata_props}
    entry = props.get("model_version") or proto.metadata_props.add()
    entry.key, entry.value = "model_version", version
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path, cnn_model: Path) -> dict[str, Any]:
    """Planned, rendered and reported deployment directories, every path of them hostile."""
    root = tmp_path_factory.mktemp("hostile")
    candidate = _versioned(tabular_model, "1.0.0", root / f"m {HOSTILE}.onnx")
    stable = _versioned(tabular_model, "0.9.0", root / f"stable {HOSTILE}.onnx")
    sample = root / f"s {HOSTILE}.npy"
    np.save(sample, np.random.default_rng(1).random((4, 16), dtype=np.float32))
    profiles = {}
    for label, model, options in (("candidate", candidate, {"sample": sample}), ("stable", stable, {})):
        profiles[label] = root / f"profile-{label} {HOSTILE}"
        run_inspect(model, profiles[label], runs=1, large_batch=2, **options)
    dirs: dict[str, Path] = {}
    for name, answers, previous in RELEASES:
        out = root / f"{name} {HOSTILE}"
        source = profiles["stable" if name == "first" else "candidate"]
        shutil.copytree(source, out)
        stable_answers = {} if previous or name == "first" else {"stable_version": "0.9.0", "stable_model": str(stable)}
        if name == "shadow":  # the in-process shadow scores a model file of its own: the server gets its path
            stable_answers["shadow_model"] = str(stable)
        run_plan(out, None, {"min_replicas": 2, **answers, **stable_answers}, previous=dirs[previous] if previous else None)
        run_render(out)
        run_report(out)
        dirs[name] = out
    cnn = root / f"cnn {HOSTILE}"
    run_inspect(shutil.copyfile(cnn_model, root / f"c {HOSTILE}.onnx"), cnn, runs=1, large_batch=2)
    run_plan(cnn, None, {})
    run_report(cnn)
    dirs["cnn"] = cnn
    paths = [display_path(d) for d in dirs.values()] + [str(p.resolve()) for p in (candidate, stable, sample)]
    assert all(HOSTILE in p for p in paths)
    return {"root": root, "dirs": dirs, "paths": paths}


def check_word(word: str, paths: list[str]) -> None:
    """A word holding a hostile path is that whole path (plus only a folder below it, or a known prefix)."""
    bare = next((word[len(p):] for p in PREFIXES if word.startswith(p)), word)
    assert any(bare.startswith(p) and SUFFIX.fullmatch(bare[len(p):]) for p in paths), \
        f"{word!r} is not one of the paths as one argument: the path was split or altered"


def hostile_words(line: str, paths: list[str]) -> list[str]:
    """The words of a line (shlex, comments dropped) that hold a hostile path, each checked."""
    words = [w for w in shlex.split(line, comments=True) if HOSTILE in w or MARK in w]
    for word in words:
        check_word(word, paths)
    return words


def logical_lines(script: str) -> list[str]:
    """A script's lines with `\\` continuations joined (the curl examples span lines)."""
    return script.replace("\\\n", " ").splitlines()


def bash_blocks(text: str) -> list[str]:
    """The ```bash blocks of a Markdown text (indented ones inside list items too), dedented."""
    blocks = []
    for match in re.finditer(r"^( *)```bash\n(.*?)^\1```", text, flags=re.S | re.M):
        indent = len(match.group(1))
        blocks.append("\n".join(line[indent:] for line in match.group(2).splitlines()))
    return blocks


def inline_commands(text: str) -> list[str]:
    """The commands the prose names in code spans (any fence length), outside code blocks."""
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    spans = [m.group(2).strip() for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", prose)]
    return [s for s in spans if s.split(" ", 1)[0] in PROGRAMS and " " in s]


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """A PATH of stubs that write their argv (NUL-separated, one file per call) and exit 0, and a working directory."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for program in PROGRAMS:
        stub = stubs / program
        stub.write_text("#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$(mktemp \"$STUB_CALLS/call.XXXXXXXX\")\"\n")
        stub.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    return {"stubs": stubs, "work": work, "calls": tmp_path / "calls"}


def run_with_stubs(script: str, sandbox: dict[str, Path]) -> list[list[str]]:
    """Run a script of printed lines under bash with only stubs to call; the argv each stub got."""
    calls = sandbox["calls"]
    shutil.rmtree(calls, ignore_errors=True)
    calls.mkdir()
    # The real /usr/bin and /bin stay after the stubs: were anything expanded, `touch` would really run.
    env = {"PATH": f"{sandbox['stubs']}:/usr/bin:/bin", "STUB_CALLS": str(calls), "HOME": str(sandbox["work"]), "LC_ALL": "C"}
    done = subprocess.run(["bash", "-c", script + "\nwait\n"], cwd=sandbox["work"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "command not found" not in done.stderr, done.stderr
    assert not list(sandbox["work"].rglob(MARK)), f"a printed line executed shell syntax:\n{script}"
    return [call.read_bytes().decode().split("\0")[:-1] for call in sorted(calls.iterdir())]


def assert_inert(script: str, sandbox: dict[str, Path], paths: list[str]) -> int:
    """shlex words and the argv the stubs received agree, and every hostile word is one whole path."""
    printed = [w for line in logical_lines(script) for w in hostile_words(line, paths)]
    calls = run_with_stubs(script, sandbox)
    received = [w for argv in calls for w in argv if HOSTILE in w or MARK in w]
    assert Counter(received) == Counter(printed), (script, received, printed)
    return len(printed)


def test_checker_refuses_a_split_path(hostile: dict[str, Any], sandbox: dict[str, Path]) -> None:
    """The checker itself: an unquoted path fails, executed shell syntax is seen, a quoted path passes."""
    d = hostile["paths"][0]
    with pytest.raises((AssertionError, ValueError)):
        assert_inert(f"deploy-model smoke --out {d}", sandbox, hostile["paths"])
    with pytest.raises(AssertionError, match="executed shell syntax"):
        run_with_stubs(f"deploy-model smoke --out x$(touch {MARK})", sandbox)
    (sandbox["work"] / MARK).unlink()
    assert assert_inert(f"deploy-model smoke --out {shlex.quote(d)}", sandbox, hostile["paths"]) == 1


def test_report_commands_keep_paths_whole(hostile: dict[str, Any], sandbox: dict[str, Path]) -> None:
    """DEPLOYMENT.md: the bash blocks (rollout, rollback, curl) and the commands the prose names."""
    seen = Counter()
    for name, directory in hostile["dirs"].items():
        text = (directory / REPORT_FILE).read_text()
        blocks = bash_blocks(text)
        assert blocks, f"{name}: no bash block in DEPLOYMENT.md"
        for block in blocks:
            seen["lines"] += len(logical_lines(block))
            seen[name] += assert_inert(block, sandbox, hostile["paths"])
        for command in inline_commands(text):
            seen["inline"] += assert_inert(command, sandbox, hostile["paths"])
    assert seen["lines"] > 200, seen
    assert seen["inline"] > 0, seen
    for name in hostile["dirs"]:
        assert seen[name] > 0, f"{name}: no printed line held the directory; nothing was checked"
    cnn = (hostile["dirs"]["cnn"] / REPORT_FILE).read_text()
    body = [shlex.split(line)[1] for line in cnn.splitlines() if line.startswith("  -d ") and "request-v2.json" in line]
    assert body == [f"@{display_path(hostile['dirs']['cnn'])}/request-v2.json"], "the request-file curl line is gone"


def test_rollout_and_rollback_step_commands(hostile: dict[str, Any], sandbox: dict[str, Path]) -> None:
    """The steps' `commands` lists, as the rollout functions return them."""
    checked = Counter()
    for name, directory in hostile["dirs"].items():
        spec = load_spec(directory)
        service = service_name(directory, spec.name)
        for step in [*rollout_steps(spec, display_path(directory), service), *rollback_steps(spec, service)]:
            if step.get("commands"):
                checked["steps"] += 1
                checked[name] += assert_inert("\n".join(step["commands"]), sandbox, hostile["paths"])
    assert checked["steps"] > 50, checked
    for name in hostile["dirs"]:
        assert checked[name] > 0, f"{name}: no rollout command held the directory"
    # The canary after a previous release names the promotion directory beside it, and the argo one a migration.
    promoted = shlex.quote(display_path(hostile["dirs"]["canary"]) + "-promoted")
    lines = [c for s in rollout_steps(load_spec(hostile["dirs"]["canary"]), display_path(hostile["dirs"]["canary"]), "svc")
             for c in s["commands"]]
    assert any(promoted in line for line in lines)
    argo = display_path(hostile["dirs"]["argo"])
    assert any(shlex.quote(argo + "-migrate") in c for s in rollout_steps(load_spec(hostile["dirs"]["argo"]), argo, "svc")
               for c in s["commands"])


@pytest.mark.parametrize("name", ["canary", "shadow"])
def test_serve_dry_run_prints_one_argument_per_path(hostile: dict[str, Any], sandbox: dict[str, Path], name: str) -> None:
    """`serve --dry-run`: the model, the warm-up sample (and the shadow model) stay one argument each."""
    directory = hostile["dirs"][name]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cli = [sys.executable, "-m", "deploy_model", "serve", "--out", str(directory), "--dry-run", "--port", "18099"]
    as_json = subprocess.run([*cli, "--json"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False)
    assert as_json.returncode == 0, as_json.stderr
    command = json.loads(as_json.stdout)["summary"]["command"]
    as_text = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False)
    assert f"  command: {command}" in as_text.stdout.splitlines()
    words = shlex.split(command)
    spec = load_spec(directory)
    served = trial_models(spec)  # a candidate in in-process shadow: the stable model answers, the candidate is scored
    expected = {"--model": str(served.model.resolve()), "--warmup-sample": str((directory / "samples" / "sample.npy").resolve())}
    if name == "shadow":
        assert served.shadow is not None and served.shadow.resolve() == Path(spec.model.path).resolve()
        expected["--shadow-model"] = str(served.shadow.resolve())
    for flag, path in expected.items():
        assert HOSTILE in path and words[words.index(flag) + 1] == path
    # The interpreter's own path is the first word: run the rest through the `python` stub.
    assert words[0] == sys.executable
    assert assert_inert(f"python {shlex.join(words[1:])}", sandbox, hostile["paths"] + list(expected.values())) == len(expected)
    assert subprocess.run(["bash", "-n", "-c", command], check=False).returncode == 0
    assert not list(hostile["root"].rglob(MARK)) and not (REPO / MARK).exists()
