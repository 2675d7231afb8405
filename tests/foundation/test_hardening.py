"""The CLI under hostile input: schedules, numbers, YAML, echoed values, --out folders, locks.

Plan and render run in-process through the real CLI entry point (cli.main) for speed; the two
concurrent `deploy` runs are real subprocesses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from deploy_model.cli import main as cli

# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiled(tabular_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deploy_model.model.inspection import run_inspect

    directory = tmp_path_factory.mktemp("hardening-profile")
    run_inspect(tabular_model, directory, runs=3, large_batch=4)
    return directory


@pytest.fixture()
def workdir(profiled: Path, tmp_path: Path) -> Path:
    out = tmp_path / "deploy"
    out.mkdir()
    shutil.copy(profiled / "model-profile.json", out / "model-profile.json")
    return out


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _plan(capsys: pytest.CaptureFixture[str], workdir: Path, answers: str) -> tuple[int, str]:
    path = workdir / "answers.yaml"
    path.write_text(answers)
    return _run(capsys, "plan", "--out", workdir, "--answers", path)


# --- cron -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('"0 2 * * *\\n# injected: true"', "holds characters cron does not use"),
        ('"0 $(touch /tmp/x) * * *"', "holds characters cron does not use"),
        ("\"0 2 * * 'x'\"", "holds characters cron does not use"),
        ('"a b c d e"', "minute 'a' is not a number"),
        ('"0 2 * * * *"', "has 6 fields; expected five"),
        ('"61 2 * * *"', "minute 61 is out of range 0-59"),
        ('"0 24 * * *"', "hour 24 is out of range 0-23"),
        ('"0 2 32 * *"', "day of month 32 is out of range 1-31"),
        ('"0 2 * 13 *"', "month 13 is out of range 1-12"),
        ('"0 2 * * 8"', "day of week 8 is out of range 0-7"),
        ('"*/0 * * * *"', "step '0' must be a whole number of at least 1"),
        ('"@reboot"', "is not a schedule a CronJob runs"),
    ],
)
def test_bad_cron_is_refused_naming_the_field(capsys, workdir, schedule, expected):
    code, text = _plan(capsys, workdir, f"traffic: batch\nbatch_schedule: {schedule}\n")
    assert code == 1, text
    assert expected in text and "batch_schedule" in text
    assert not (workdir / "deployment.yaml").exists()


@pytest.mark.parametrize("schedule", ["0 2 * * *", "*/15 8-18 * * MON-FRI", "0 0 1 JAN,JUL ?", "@daily", "5,35 */2 1-15/2 * 0"])
def test_good_cron_is_kept(capsys, workdir, schedule):
    code, text = _plan(capsys, workdir, f"traffic: batch\nbatch_schedule: {json.dumps(schedule)}\n")
    assert code == 0, text
    spec = yaml.safe_load((workdir / "deployment.yaml").read_text())
    assert spec["batch"]["schedule"] == schedule


def test_hand_edited_spec_schedule_is_checked_by_render(capsys, workdir):
    assert _plan(capsys, workdir, "traffic: batch\n")[0] == 0
    path = workdir / "deployment.yaml"
    path.write_text(path.read_text().replace("schedule: 0 2 * * *", 'schedule: "0 2 * * *\\n$(id)"'))
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 1 and "holds characters cron does not use" in text
    assert not (workdir / "Dockerfile").exists()


# --- numbers ----------------------------------------------------------------------------------


def test_absurd_request_rate_is_refused_with_the_max_and_why(capsys, workdir):
    code, text = _plan(capsys, workdir, "requests_per_second: 1e9\n")
    assert code == 1
    assert "requests_per_second 1e+09 is out of range: expected 0 to 100000" in text
    assert "split the traffic" in text
    assert not (workdir / "deployment.yaml").exists()


def test_rate_that_needs_too_many_replicas_is_refused_with_the_arithmetic(capsys, workdir):
    # A model measured at 50 ms a row (~20 req/s a replica), whatever this machine's speed: 100k req/s
    # needs thousands of replicas, past the cap of 1000.
    profile = json.loads((workdir / "model-profile.json").read_text())
    for row in profile["latency"]["batches"]:
        slower = 50.0 * row["batch_size"] / row["p50_ms"]
        row.update({key: value * slower for key, value in row.items() if key.endswith("_ms")})
    (workdir / "model-profile.json").write_text(json.dumps(profile))
    code, text = _plan(capsys, workdir, "requests_per_second: 100000\nlatency_sla_ms: 1000\n")
    assert code == 1, text
    assert "replicas at the ~20 req/s one replica of this model serves" in text and "at most 1000" in text
    assert not (workdir / "deployment.yaml").exists()


def test_replicas_stay_within_the_cap(capsys, workdir):
    code, text = _plan(capsys, workdir, "min_replicas: 900\n")
    assert code == 0, text
    spec = yaml.safe_load((workdir / "deployment.yaml").read_text())
    assert spec["scaling"]["min_replicas"] == 900 and spec["scaling"]["max_replicas"] == 1000
    code, text = _plan(capsys, workdir, "max_replicas: 5000\n")
    assert code == 1 and "max_replicas" in text and "1000" in text


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_infinite_and_nan_numbers_are_refused(capsys, workdir, value):
    for key in ("requests_per_second", "latency_sla_ms", "max_batch_delay_ms", "shadow_sample_rate"):
        code, text = _plan(capsys, workdir, f"{key}: {value}\n")
        assert code == 1, (key, text)
        assert "internal error" not in text and key in text
        assert "finite" in text


def test_latency_bounds(capsys, workdir):
    code, text = _plan(capsys, workdir, "latency_sla_ms: 0.001\n")
    assert code == 1 and "latency_sla_ms 0.001 is out of range: expected 0.1 to 3.6e+06" in text
    code, text = _run(capsys, "plan", "--out", workdir, "--latency-sla-ms", "1e12")
    assert code == 1 and "over an hour is not a request latency" in text


def test_hand_edited_spec_numbers_are_checked(capsys, workdir):
    assert _plan(capsys, workdir, "")[0] == 0
    path = workdir / "deployment.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["scaling"]["max_replicas"] = 50_000
    spec["serving"]["port"] = 70_000
    spec["slo"]["latency_p95_ms"] = float("inf")
    path.write_text(yaml.safe_dump(spec))
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 1
    assert "scaling.max_replicas 50000 is out of range" in text
    assert "serving.port 70000 is out of range" in text
    assert "latency_p95_ms" in text and "finite" in text


# --- YAML and echoes --------------------------------------------------------------------------


def test_duplicate_yaml_keys_are_refused_naming_key_and_lines(capsys, workdir):
    code, text = _plan(capsys, workdir, "traffic: realtime\nmin_replicas: 2\nrollout: canary\nmin_replicas: 20\n")
    assert code == 1
    assert "duplicate key 'min_replicas' (line 4; first on line 2)" in text
    assert not (workdir / "deployment.yaml").exists()


def test_duplicate_keys_in_deployment_yaml_are_refused(capsys, workdir):
    assert _plan(capsys, workdir, "")[0] == 0
    path = workdir / "deployment.yaml"
    path.write_text(path.read_text() + "name: other\n")
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 1 and "duplicate key 'name'" in text


def test_long_values_are_not_echoed_whole(capsys, workdir):
    long_name = "x" * 10_000
    code, text = _run(capsys, "plan", "--out", workdir, "--name", long_name.upper())
    assert code == 1 and "is not a DNS-1123 label" in text
    assert long_name.upper() not in text and len(text) < 2000
    code, text = _plan(capsys, workdir, f"{'k' * 1000}: 1\nhost: {'H' * 10_000}\n")
    assert code == 1 and "unknown key" in text and "host" in text
    assert "expected one of: name, namespace, target" in text  # the keys, whatever the file is called
    assert "k" * 200 not in text and "H" * 200 not in text and len(text) < 3000


def test_yaml_alias_bomb_is_refused_quickly(capsys, workdir):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ) + "name: *i\n"
    code, text = _plan(capsys, workdir, bomb)
    # 9**9 strings if expanded; the refusal names each key once and echoes 80 characters of it.
    assert code == 1 and len(text) < 10_000 and "name: Input should be a valid string" in text


# --- the deployment directory: foreign files, unwritable --out, one writer at a time ------------


def test_render_never_replaces_files_it_did_not_write(capsys, workdir):
    assert _plan(capsys, workdir, "")[0] == 0
    (workdir / "Dockerfile").write_text("FROM scratch\n# my own\n")
    (workdir / "k8s").mkdir()
    (workdir / "k8s" / "my-app.yaml").write_text("kind: ConfigMap\n")
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 1, text
    assert "did not write" in text and "Dockerfile" in text and "k8s/my-app.yaml" in text and "--force" in text
    assert (workdir / "Dockerfile").read_text() == "FROM scratch\n# my own\n"
    assert (workdir / "k8s" / "my-app.yaml").is_file() and not (workdir / "manifest.json").exists()
    # --force replaces them; after that every file is the bundle's and re-rendering needs no force.
    assert _run(capsys, "render", "--out", workdir, "--force")[0] == 0
    assert "# my own" not in (workdir / "Dockerfile").read_text()
    assert not (workdir / "k8s" / "my-app.yaml").exists()
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 0, text


def test_a_foreign_manifest_does_not_vouch_for_anything(capsys, workdir):
    assert _plan(capsys, workdir, "")[0] == 0
    (workdir / "manifest.json").write_text(json.dumps({"files": [{"path": "Dockerfile"}]}))
    (workdir / "Dockerfile").write_text("FROM scratch\n")
    code, text = _run(capsys, "render", "--out", workdir)
    assert code == 1 and "Dockerfile" in text and "manifest.json" in text


def test_deploy_into_a_folder_of_the_users_refuses_before_writing(capsys, tabular_model, tmp_path):
    out = tmp_path / "mine"
    (out / "k8s").mkdir(parents=True)
    (out / "k8s" / "deployment.yaml").write_text("kind: Deployment\n")
    code, text = _run(capsys, "deploy", tabular_model, "--out", out)
    assert code == 1 and "k8s/deployment.yaml" in text
    assert sorted(p.name for p in out.iterdir()) == [".deploy-model.lock", "k8s"]


def test_unwritable_out_is_a_clear_refusal(capsys, tabular_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (["inspect", tabular_model, "--out", blocker / "sub", "--runs", "1"],
                 ["deploy", tabular_model, "--out", blocker / "sub"],
                 ["deploy", tabular_model, "--out", blocker]):
        code, text = _run(capsys, *args)
        assert code == 1, (args, text)
        assert "internal error" not in text and "Traceback" not in text
        assert str(blocker) in text and ("Not a directory" in text or "is a file" in text), text


def test_a_second_render_refuses_while_the_folder_is_held(capsys, workdir, monkeypatch):
    import threading

    from deploy_model.common.dirlock import DirectoryLock

    assert _plan(capsys, workdir, "")[0] == 0
    held = DirectoryLock(workdir, "test").acquire()
    try:
        code, text = _run(capsys, "render", "--out", workdir)
        assert code == 1 and "is in use by `deploy-model test`" in text and "DEPLOY_MODEL_LOCK_WAIT_S" in text
        assert not (workdir / "manifest.json").exists()
        # Asked to wait, it waits for the holder and then renders.
        monkeypatch.setenv("DEPLOY_MODEL_LOCK_WAIT_S", "30")
        threading.Timer(1.0, held.release).start()
        code, text = _run(capsys, "render", "--out", workdir)
        assert code == 0 and "waiting up to 30 s" in text
    finally:
        held.release()
    assert (workdir / "manifest.json").is_file()


@pytest.mark.slow
def test_two_concurrent_deploys_into_one_folder(tabular_model, tmp_path, cli_env):
    """One deploy runs; the other, started at the same moment, refuses and names it."""
    import subprocess
    import sys

    out = tmp_path / "shared"
    command = [sys.executable, "-m", "deploy_model", "deploy", str(tabular_model), "--out", str(out),
               "--concurrency", "1", "--seconds", "0.5", "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
             for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (won,) = [r for r in results if r[0] == 0]
    (lost,) = [r for r in results if r[0] == 1]
    assert "is in use by `deploy-model deploy`" in lost[2]
    assert json.loads(won[1])["ok"] is True
    # The winner's figures are its own: one load test, written by the run that succeeded.
    assert (out / "loadtest.json").is_file() and (out / "DEPLOYMENT.md").is_file()


def test_every_refusal_is_bounded():
    from deploy_model.common.errors import StageError

    exc = StageError("x" * 100_000, ["y" * 100_000] * 1000)
    assert len(exc.message) < 4100 and len(exc.problems) == 201
    assert all(len(p) < 2100 for p in exc.problems) and exc.problems[-1] == "... and 800 more"
    assert len(str(exc)) < 500_000
