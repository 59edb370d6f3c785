"""The compiled Mamba2 scan's training backward of an earlier commit against this checkout's, side by side: the
backward alone (checkpointed forward done once outside the clock) at the training shapes of `tiny` (8 x 1,024 nt),
`cpu` and `small` (1 x 8,192 nt), 1 thread, interleaved, medians, and the largest difference of every gradient.

    python bench/scan_backward_ab.py --before 6a55353 --reps 15 --out docs/results/scan-backward-ab.json
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

# batch, length, heads, head width, state size: tiny's two stages, cpu's two stages, small's stage 0
SHAPES = ((8, 1024, 8, 16, 16), (8, 342, 8, 16, 16), (1, 8193, 5, 32, 32), (1, 2731, 6, 32, 32),
          (1, 8193, 6, 64, 64))


def gradients(xbc, dt, A, D, dy, h, p, n):
    leaves = [t.clone().requires_grad_() for t in (xbc, dt, A, D)]
    y = cpu_mixer.ssd_scan_trainable(*leaves, h, p, n)
    start = time.perf_counter()
    grads = torch.autograd.grad(y, leaves, dy)
    return time.perf_counter() - start, grads


def main() -> None:
    args = ab_arguments(__doc__, "backward")
    results = {}
    with tempfile.TemporaryDirectory(prefix="dnahnet-scan-bwd-ab-") as tmp:
        libs = before_and_after(args.before, Path(tmp))
        for b, l, h, p, n in SHAPES:
            xbc, dt = torch.randn(b, l, h * p + 2 * n), torch.rand(b, l, h) * 0.1
            A, D, dy = -torch.rand(h) * 2, torch.randn(h), torch.randn(b, l, h * p)
            times: dict[str, list[float]] = {k: [] for k in libs}
            grads = {}
            for rep in range(args.reps + 1):
                for name in (libs if rep % 2 else reversed(list(libs))):
                    use(libs[name])
                    seconds, grads[name] = gradients(xbc, dt, A, D, dy, h, p, n)
                    if rep:
                        times[name].append(seconds)
            median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            diff = {name: float(((a - c).abs().max() / c.abs().max().clamp_min(1e-30)).item())
                    for name, a, c in zip(("dxbc", "ddt", "dA", "dD"), grads["after"], grads["before"])}
            key = f"{b} x {l} positions, {h} heads x {p} wide, d_state {n}"
            results[key] = {"median_ms": median, "speedup": median["before"] / median["after"],
                            "max_diff_relative_to_max": diff}
            print(f"{key}: before {median['before']:.2f} ms, after {median['after']:.2f} ms "
                  f"({median['before'] / median['after']:.2f}x), max diff / max: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()))
    emit({"command": "python bench/scan_backward_ab.py " + " ".join(sys.argv[1:]), "before": args.before,
          "reps": args.reps, "threads": 1, "environment": environment(), "shapes": results}, args.out)


if __name__ == "__main__":
    main()
