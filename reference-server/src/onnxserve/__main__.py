"""``python -m onnxserve``: run the server; SIGTERM drains before exiting 0.

Exit codes: 0 clean shutdown, 1 refused at start-up (model unreadable or with a type it cannot
serve, GPU not active without --allow-cpu-fallback, incompatible shadow model, warm-up sample
missing or not fitting the model, payload log sink unusable), 2 usage error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .payload_log import check_sink
from .process import serve
from .settings import SettingsError, load_settings
from .warmup import check_sample_path


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"onnxserve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not settings.model.is_file():
        print(f"onnxserve: model file {str(settings.model)!r} does not exist", file=sys.stderr)
        return 1
    if settings.shadow_model is not None and not settings.shadow_model.is_file():
        print(
            f"onnxserve: shadow model {str(settings.shadow_model)!r} does not exist",
            file=sys.stderr,
        )
        return 1
    if settings.warmup_sample is not None and settings.warmup:
        problem = check_sample_path(settings.warmup_sample)
        if problem:
            print(f"onnxserve: {problem}", file=sys.stderr)
            return 1
    problem = check_sink(settings)
    if problem:
        print(f"onnxserve: {problem}", file=sys.stderr)
        return 1
    if settings.workers > 1:
        from .workers import run_workers

        return run_workers(settings)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
