"""Time `render` + `validate` of a full bundle of the example model (target: under 3 s together).

Usage: python bench/render_validate.py [--runs N]. Builds the example model, inspects and plans it
once (Argo canary: the bundle with the most documents), then times N render+validate rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from deploy_model.bundle.render import run_render
from deploy_model.bundle.validate import run_validate
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("build_examples", ROOT / "examples" / "build_examples.py")
    assert spec and spec.loader
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    with tempfile.TemporaryDirectory() as tmp:
        model = builder.build("tabular_classifier", Path(tmp) / "models")
        out = Path(tmp) / "deploy"
        run_inspect(model, out, runs=3, large_batch=4)
        run_plan(out, None, {"rollout": "canary", "canary_mechanism": "argo-rollouts", "latency_sla_ms": 50})
        render_s, validate_s = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = run_render(out)
            t1 = time.perf_counter()
            checks = run_validate(out, strict=True)["summary"]["checks"]
            t2 = time.perf_counter()
            render_s.append(t1 - t0)
            validate_s.append(t2 - t1)
        total = [r + v for r, v in zip(render_s, validate_s, strict=True)]
        print(f"bundle: {result['summary']['files']} files, {checks} checks; {args.runs} runs")
        print(f"render   median {statistics.median(render_s):.3f} s  (min {min(render_s):.3f})")
        print(f"validate median {statistics.median(validate_s):.3f} s  (min {min(validate_s):.3f})")
        print(f"total    median {statistics.median(total):.3f} s  (min {min(total):.3f}, max {max(total):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
