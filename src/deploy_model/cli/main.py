"""The `deploy-model` entry point: the app with every verb registered, run with exit codes.

Exit codes (every verb): 0 ok; 1 the input was checked and refused; 2 usage error. With --json,
stdout holds exactly one JSON document; diagnostics go to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from deploy_model.cli.base import _say, app
from deploy_model.common.errors import EXIT_REFUSED, EXIT_USAGE

# Importing a verb module registers its verbs on the app (one way: they import base, never this);
# the order is the order of `--help`: the stages first.
# isort: split
from deploy_model.cli import stages  # noqa: F401

# isort: split
from deploy_model.cli import convert, install  # noqa: F401

# isort: split
from deploy_model.cli import releases  # noqa: F401

# isort: split
from deploy_model.cli import agent, cluster  # noqa: F401

# isort: split
from deploy_model.cli import experiment  # noqa: F401

# isort: split
from deploy_model.cli import drift  # noqa: F401


def main(argv: list[str] | None = None, prog_name: str = "deploy-model", verb: str | None = None) -> int:
    """Run the CLI (or one verb of it, for scripts/<stage>.py) and return the exit code."""
    command: Any = typer.main.get_command(app)
    if verb is not None:
        command = command.commands[verb]
    args = sys.argv[1:] if argv is None else argv
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _say(f"{prog_name}: error: {exc.format_message()}")
        return EXIT_USAGE if exc.exit_code == 2 else int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _say("interrupted")
        return 130
    except Exception as exc:  # last resort: one line, never a traceback, unless asked for
        if os.environ.get("DEPLOY_MODEL_DEBUG"):
            raise
        _say(f"{prog_name}: internal error: {type(exc).__name__}: {exc} (set DEPLOY_MODEL_DEBUG=1 for a traceback)")
        return EXIT_REFUSED
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
