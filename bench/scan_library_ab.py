"""The compiled Mamba2 scan of an earlier commit against this checkout's, side by side: the scan alone at the
shipped model's two shapes (heads 32 wide) and `small`'s (64 wide), 8,192 nt, interleaved, medians, and whether
the two give bitwise the same outputs and final states.

    python bench/scan_library_ab.py --before 4664b1b --reps 15 --out docs/results/scan-pairs-2026-12-08.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402
from scan_state_precision import ab_arguments, before_and_after, use  # noqa: E402

from dnahnet_cli.model import cpu_mixer  # noqa: E402

SHAPES = ((5, 32, 32, 8193), (6, 32, 32, 2731), (6, 64, 64, 8193), (8, 64, 64, 2731))  # heads, width, state, length


def main() -> None:
    args = ab_arguments(__doc__, "scan")
    results = {}
    with tempfile.TemporaryDirectory(prefix="dnahnet-scan-ab-") as tmp:
        libs = before_and_after(args.before, Path(tmp))
        for h, p, n, l in SHAPES:
            xbc, dt = torch.randn(1, l, h * p + 2 * n), torch.rand(1, l, h) * 0.1
            A, D = -torch.rand(h) * 2, torch.randn(h)
            times: dict[str, list[float]] = {k: [] for k in libs}
            outputs = {}
            for rep in range(args.reps + 1):
                for name in (libs if rep % 2 else reversed(list(libs))):
                    use(libs[name])
                    start = time.perf_counter()
                    outputs[name] = cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n, threads=1)
                    if rep:
                        times[name].append(time.perf_counter() - start)
            median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            same = all(torch.equal(a, b) for a, b in zip(outputs["before"], outputs["after"]))
            key = f"{h} heads x {p} wide, d_state {n}, {l} positions"
            results[key] = {"median_ms": median, "speedup": median["before"] / median["after"], "bitwise_equal": same}
            print(f"{key}: before {median['before']:.2f} ms, after {median['after']:.2f} ms "
                  f"({median['before'] / median['after']:.2f}x), bitwise equal: {same}")
    emit({"command": "python bench/scan_library_ab.py " + " ".join(sys.argv[1:]), "before": args.before,
          "reps": args.reps, "threads": 1, "environment": environment(), "shapes": results}, args.out)


if __name__ == "__main__":
    main()
