"""Shared fixtures: the example models, built once per session by the project's own builder."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Helper modules at this level (scrape_lab.py) for the tests of every folder (importlib import mode).
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_examples", REPO / "examples" / "build_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'tabular_classifier': path, 'image_cnn': path} built deterministically into a temp dir."""
    return _load_builder().build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tabular_model(example_models: dict[str, Path]) -> Path:
    return example_models["tabular_classifier"]


@pytest.fixture(scope="session")
def cnn_model(example_models: dict[str, Path]) -> Path:
    return example_models["image_cnn"]


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for running the scripts/CLI as a user would: the venv's python on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


# --- test tiers -------------------------------------------------------------------------------
# `make check` runs `-m "not e2e and not realmodels and not slow"`: the suite less the Claude Code
# sessions, the real-model suite and the long real-server tests, in under 3 minutes on 2 cores.
# `make test` runs everything. The markers are set here by path, so the test files need not carry
# them (some also mark their own tests @pytest.mark.slow).
E2E = ("claude/test_e2e_claude.py",)  # /deploy-model in the real Claude Code CLI, one session per pattern
REALMODELS = ("realmodels/",)  # models built from pinned wheels of the package index
# Slow beyond those marked in their files: each a few seconds or more, mostly a real server, worker,
# Redis or API server per test. A folder ("grpc/") or a file with () is slow whole; else the test
# names (every parametrization of each). A new test file in a slow folder is slow unless in QUICK.
SLOW: dict[str, tuple[str, ...]] = {
    "batch/test_formats.py": ("test_deploy_model_batch_verb_and_script_run_the_same_code",
                              "test_input_is_streamed_not_loaded_whole"),
    "batch/test_kill_resume.py": (),
    "batch/test_storage_errors.py": (),
    "batch/test_value_types_batch.py": ("test_too_many_rejected_rows_fail_the_run",
                                        "test_zipmap_classifier_rows_equal_onnxruntime"),
    "claude/test_command_lines.py": ("test_command_line_runs",),  # every documented line, a real server
    "cluster/test_apply.py": (),
    "cluster/test_cluster.py": ("test_no_cluster_is_one_line_and_exit_0", "test_each_addon_is_seen_only_when_served"),
    "cluster/test_portforward.py": (),
    "cluster/test_rollout_verbs.py": (),
    "convert/test_deploy_every_format.py": (),  # eleven whole deploys, one per converted format
    "experiment/test_ab_servers.py": (),  # two real servers per test, hundreds of requests
    "experiment/test_ab_router.py": (),  # nginx and two real servers
    "foundation/test_agent_verbs.py": ("test_streaming_trial_round_trips_through_redis_and_the_worker",),
    "foundation/test_cli.py": ("test_deploy_runs_available_stages",),  # a whole deploy
    "foundation/test_inspect.py": ("test_other_formats_go_to_their_converter", "test_cnn_profile_dry_run_writes_nothing"),
    "foundation/test_launcher.py": ("test_failed_uv_fetch_prints_pips_own_error",),
    "grpc/": (),
    "measure/test_bundle_sample.py": (),
    "measure/test_cold_start.py": (),
    "measure/test_loadtest.py": ("test_closed_loop_sweep_measures_each_level_and_draws_the_chart",
                                "test_the_load_is_the_sample_and_a_refused_synthetic_body_says_why",
                                "test_bad_levels_and_unreachable_url_are_refused", "test_open_loop_sends_the_scheduled_count",
                                "test_enforce_sla_turns_no_go_into_exit_1", "test_request_cap_bounds_a_level"),
    "measure/test_report_examples.py": (),
    "measure/test_serve_drain.py": ("test_serve_runs_the_planned_worker_processes",
                                    "test_real_server_drains_with_the_spec_budget"),
    "measure/test_serving.py": ("test_detach_then_stop_through_the_cli", "test_foreground_serve_stops_the_server_on_sigterm",
                                "test_refused_model_fails_with_the_server_log", "test_context_manager_stops_the_server_by_pid",
                                "test_dry_run_prints_the_command_and_starts_nothing"),
    "measure/test_serving_warmup.py": ("test_profile_sample_is_passed_as_warmup_sample",
                                       "test_refusal_carries_the_servers_own_reason"),
    "measure/test_smoke.py": ("test_smoke_passes_on_real_signatures", "test_a_model_that_rejects_synthetic_inputs_is_fed_the_sample",
                              "test_smoke_without_url_or_server_record_says_what_to_do",
                              "test_a_declared_output_shape_the_model_does_not_honour_is_a_warning",
                              "test_smoke_fails_naming_the_check_when_the_profile_disagrees",
                              "test_smoke_against_nothing_fails_on_live"),
    "quantize/test_quantize.py": ("test_example_cnn_is_refused_for_being_slower_unless_allowed",),
    "render/test_api_semantics.py": (),
    "render/test_batch_scaleout.py": ("test_indexed_job_on_the_volume_validates", "test_object_storage_urls_and_secret"),
    "render/test_defects.py": (),
    "render/test_edge_bundle.py": ("test_edge_bundle_carries_the_accepted_int8_model",),
    "render/test_event_and_grpc.py": (),
    "render/test_hpa_replicas.py": (),
    "render/test_matrix.py": (),  # every combination rendered and validated
    "render/test_supply_chain.py": (),
    "render/test_two_versions.py": ("test_release_two_bundles_validate", "test_release_one_two_and_promotion",
                                    "test_leaving_blue_green_emits_the_migration",
                                    "test_previous_directory_that_was_never_promoted_keeps_its_stable"),
    "render/test_worker_monitoring.py": (),
    "report/test_printed_commands.py": (),
    "report/test_report.py": ("test_every_object_the_commands_name_is_rendered",),
    "server/": (),
    "worker/": (),
}
# Files of a slow folder that make check keeps: unit tests, and one real server's protocol.
QUICK = ("server/test_protocol.py", "server/test_structure.py", "server/test_units.py",
         "server/test_value_type_units.py", "server/test_workers.py")


def _is_slow(path: str, name: str) -> bool:
    if path in QUICK:
        return False
    if any(path.startswith(folder) for folder in SLOW if folder.endswith("/")):
        return True
    names = SLOW.get(path)
    return names is not None and (not names or name in names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = REPO / "tests"
    for item in items:
        full = Path(str(item.path)).resolve()
        if not full.is_relative_to(tests):
            continue
        path = full.relative_to(tests).as_posix()
        if path.startswith(E2E):
            item.add_marker(pytest.mark.e2e)
        if path.startswith(REALMODELS):
            item.add_marker(pytest.mark.realmodels)
        if _is_slow(path, getattr(item, "originalname", item.name)):
            item.add_marker(pytest.mark.slow)
