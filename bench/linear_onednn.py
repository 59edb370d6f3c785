"""fp32 linear layers: torch's F.linear (MKL on x86 wheels) against oneDNN's GEMM (cpu_linear.linear), side by side.

Shapes: rows x in -> out of the projections an fp32 scoring forward runs (`cpu`'s stage-0 Mamba2 in_proj and
out_proj at 8,192 nt, its stage-1 in_proj, its main network's MLP; `small`'s stage-0 in_proj; `tiny`'s), and a
few small row counts where oneDNN's fixed cost shows (which set cpu_linear.MIN_ROWS). Interleaved, medians of
--reps, with the largest relative difference between the two outputs.

    python bench/linear_onednn.py --reps 21 --threads 1 --out docs/results/linear-onednn.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from dnahnet_cli.model.openmp import short_spin  # noqa: E402

short_spin()  # as the dnahnet command does before torch loads
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import emit, environment, interleaved, paired_ratio  # noqa: E402

from dnahnet_cli.model import cpu_linear  # noqa: E402

SHAPES = [(1, 80, 389), (16, 80, 389), (64, 80, 389), (256, 80, 389), (512, 80, 389),
          (8193, 80, 389), (8193, 160, 80), (2731, 96, 454), (1366, 128, 704), (16 * 1024, 64, 272),
          (8193, 192, 902)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if cpu_linear.status() != "ok":
        raise SystemExit(f"oneDNN linear: {cpu_linear.status()}")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for m, k, n in SHAPES:
            x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
            t = interleaved({"mkl": lambda: F.linear(x, w), "onednn": lambda: cpu_linear.linear(x, w, None)},
                            args.reps, probe=lambda: 0.0)
            want = F.linear(x, w)
            err = float((cpu_linear.linear(x, w, None) - want).norm() / want.norm())
            flop = 2 * m * k * n
            row = {"rows": m, "in": k, "out": n, "median_us": {v: 1e6 * s for v, s in t["median"].items()},
                   "gflops": {v: flop / s / 1e9 for v, s in t["median"].items()},
                   "speedup": paired_ratio(t["samples"], "mkl", "onednn"), "relative_difference": err}
            rows.append(row)
            print(f"{m} x {k} -> {n}: F.linear {row['median_us']['mkl']:.1f} us ({row['gflops']['mkl']:.0f} GFLOP/s), "
                  f"oneDNN {row['median_us']['onednn']:.1f} us ({row['gflops']['onednn']:.0f}), "
                  f"x{row['speedup']:.2f}, rel. diff {err:.1e}", file=sys.stderr)
    emit({"command": " ".join(["python"] + sys.argv), "threads": args.threads, "reps": args.reps,
          "min_rows": cpu_linear.MIN_ROWS, "environment": environment(), "shapes": rows}, args.out)


if __name__ == "__main__":
    main()
