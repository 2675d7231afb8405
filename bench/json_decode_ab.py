"""In-process A/B of the V2 JSON decode (``onnxserve.codec.decode_v2``) on the 83 KB image body:
this checkout's server against another checkout's ``reference-server/src``, rounds interleaved,
thread CPU time (a busy machine delays a thread but charges it little CPU for the wait).

    .venv/bin/python bench/json_decode_ab.py --baseline-src DIR [--rounds 20] [--calls 200]

Make DIR from an older commit with
``git archive <commit> reference-server/src | tar -x -C /some/dir`` (then DIR is
``/some/dir/reference-server/src``). Both decode the same body to the same array (checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_bench import bodies  # noqa: E402

OURS = HERE.parent / "reference-server" / "src"


def _load(src: Path) -> tuple[ModuleType, ModuleType]:
    """onnxserve.codec and onnxserve.model imported from ``src`` (a fresh package each time)."""
    for name in [n for n in sys.modules if n == "onnxserve" or n.startswith("onnxserve.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        import onnxserve.codec as codec
        import onnxserve.model as model
    finally:
        sys.path.remove(str(src))
    return codec, model


def _decoder(src: Path, body: bytes) -> Any:
    codec, model = _load(src)
    x = model.TensorSpec("x", "FP32", (None, 3, 64, 64), "tensor", ())
    y = model.TensorSpec("y", "FP32", (None, 10), "tensor", ())
    spec = model.ModelSpec("m", "1", (x,), (y,), True, 32)
    return lambda: codec.decode_v2(body, None, spec, False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-src", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--calls", type=int, default=200, help="decodes per timed round")
    args = ap.parse_args()
    if not (args.baseline_src / "onnxserve" / "codec.py").is_file():
        print(f"{args.baseline_src}: no onnxserve/codec.py there", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="json_decode_ab."))
    body = bodies("cnn", work)["onnxserve-json"][0].read_bytes()
    runs = {"baseline": _decoder(args.baseline_src, body), "this": _decoder(OURS, body)}
    a, b = (f().feeds["x"] for f in runs.values())
    if a.dtype != b.dtype or not np.array_equal(a, b):
        print("the two decoders disagree on the body", file=sys.stderr)
        return 1
    took: dict[str, list[float]] = {name: [] for name in runs}
    for rnd in range(args.rounds):
        for name in runs if rnd % 2 == 0 else reversed(list(runs)):
            t0 = time.thread_time()
            for _ in range(args.calls):
                runs[name]()
            took[name].append((time.thread_time() - t0) / args.calls * 1e6)
    print(f"body {len(body)} bytes; decode_v2 per call, thread CPU time over {args.rounds} rounds")
    for name, values in took.items():
        print(f"{name}: median {statistics.median(values):.1f} us, min {min(values):.1f} us")
    ratio = [o / n for o, n in zip(took["baseline"], took["this"], strict=True)]
    print(
        f"baseline / this, per round: median {statistics.median(ratio):.2f}x "
        f"(range {min(ratio):.2f}-{max(ratio):.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
