"""`deploy-model batch`: the batch runner of the reference server, reached from the CLI.

Delegating (rather than re-implementing) keeps one batch code path: what a person runs here is
what the rendered Job/CronJob and the Prefect flow run in the container.
"""

from __future__ import annotations

import sys

from deploy_model.common.errors import EXIT_USAGE


def run_batch_cli(argv: list[str], prog: str = "deploy-model batch") -> int:
    try:
        from onnxserve.batch.__main__ import main as batch_main
    except ImportError as exc:
        print(
            f"{prog}: error: the reference server package (onnxserve) is not importable: {exc}; "
            "expected it installed (pip install ./reference-server[batch]) or on PYTHONPATH",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return batch_main(argv, prog=prog)
