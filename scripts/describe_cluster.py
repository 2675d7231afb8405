#!/usr/bin/env python3
"""Stage `cluster` of deploy-model, runnable without installing the package: python3 scripts/describe_cluster.py --help"""

import sys
from pathlib import Path

# The project's code and the reference server's, so the script runs from a plain checkout.
for _path in ("src", "reference-server/src"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / _path))

from deploy_model.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog_name="describe_cluster.py", verb="cluster"))
