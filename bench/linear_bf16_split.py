"""Could the fp32 projections that the precision policy keeps for scoring use bf16 matmuls and stay fp32-accurate?

Why: on an AMX CPU bf16 GEMMs run several times faster than fp32 ones, and the stage-0 projections kept fp32 are
the largest GEMM cost of a `small` scoring forward. The candidate splits each operand into two bf16 parts
(x = x_hi + x_lo) and sums the three larger products x_hi w_hi + x_hi w_lo + x_lo w_hi as one GEMM over
concatenated inputs, in oneDNN's bf16 math mode (bf16 multiplies, fp32 output). Compared, per shape, 1 thread,
interleaved, medians: oneDNN fp32 (what runs today), the split, and plain bf16 inputs in that math mode (not
fp32-accurate; the speed bound), each with its relative error against float64. Where the CPU has AMX-BF16,
also the compiled split kernel that scoring now uses for those layers (`cpu_linear.split_linear`,
csrc/linear_amx.c: the same three products on AMX tiles, accumulated in fp32, the weight packed beforehand as
the model keeps it), called as the model calls it.

    python bench/linear_bf16_split.py --reps 15 --out docs/results/linear-bf16-split-amx-2026-12-07.json
    python bench/linear_bf16_split.py --reps 15 --out docs/results/linear-amx-split-2026-12-08.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from common import emit, environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnahnet_cli.model import cpu_linear  # noqa: E402

# rows, in, out: small's stage-0 in/out projections and stage-1 encoder in/out projections; cpu's stage-0 ones
SHAPES = [(8193, 192, 902), (8193, 384, 192), (2731, 256, 1160), (2731, 512, 256), (8193, 80, 389), (8193, 160, 80)]


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t = hi + lo, both exactly representable in bf16 (kept as fp32, so that the bf16 math mode rounds nothing)."""
    hi = t.to(torch.bfloat16).float()
    return hi, (t - hi).to(torch.bfloat16).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.backends.mkldnn, "matmul"):
        sys.exit("linear_bf16_split.py: needs torch with oneDNN and torch.backends.mkldnn.matmul.fp32_precision")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    setting = torch.backends.mkldnn.matmul
    results = {}
    for rows, k, n in SHAPES:
        x, w = torch.randn(rows, k), torch.randn(n, k) / k ** 0.5
        w_hi, w_lo = split(w)
        w_cat = torch.cat([w_hi, w_lo, w_hi], 1).contiguous()

        def split3() -> torch.Tensor:
            x_hi, x_lo = split(x)
            return linear(torch.cat([x_hi, x_hi, x_lo], 1), w_cat)

        variants = {"fp32": ("ieee", lambda: linear(x, w)), "bf16 split x3": ("bf16", split3),
                    "bf16 inputs": ("bf16", lambda: linear(x, w))}
        if cpu_linear.split_status() == "ok":
            packed = cpu_linear.pack(w)
            variants["AMX split kernel"] = ("ieee", lambda: cpu_linear.split_linear(x, w, None, packed))
        reference = x.double() @ w.double().t()
        times: dict[str, list[float]] = {name: [] for name in variants}
        errors = {}
        with torch.no_grad():
            for rep in range(args.reps + 1):  # the first round warms up and gives the errors
                for name, (precision, run) in variants.items():
                    setting.fp32_precision = precision
                    t = time.perf_counter()
                    y = run()
                    elapsed = time.perf_counter() - t
                    if rep == 0:
                        errors[name] = float((y.double() - reference).norm() / reference.norm())
                    else:
                        times[name].append(elapsed)
        setting.fp32_precision = "none"
        median = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        results[f"{rows} x {k} -> {n}"] = {"median_ms": median, "relative_error_vs_float64": errors}
        print(f"{rows:>5} x {k:>3} -> {n:>4}: " + ", ".join(
            f"{name} {median[name]:.2f} ms (rel. error {errors[name]:.1e})" for name in variants))
    emit({"command": "python bench/linear_bf16_split.py " + " ".join(sys.argv[1:]), "reps": args.reps,
          "threads": 1, "environment": environment(), "shapes": results}, args.out)


if __name__ == "__main__":
    main()
