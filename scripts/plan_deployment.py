#!/usr/bin/env python3
"""Stage `plan` of deploy-model, runnable without installing the package: python3 scripts/plan_deployment.py --help"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from deploy_model.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog_name="plan_deployment.py", verb="plan"))
