"""Two probes behind "why `small` scoring stops at 2.5x on one thread" (docs/benchmarks.md), 1 thread, the
variants of each probe interleaved repetition by repetition (bench/common.interleaved), medians:

* causal attention over the main network's 1,366 positions (1 x 6 heads x 64): torch's fused CPU kernel in fp32
  and bf16, and a query-blocked bf16 attention written with matmuls (scores rounded to bf16);
* the stage-0 projection GEMMs in fp32, bf16, and as one split-bf16 product ([x_hi, x_hi, x_lo] @ [W_hi; W_lo; W_hi],
  three bf16 products in one GEMM), each with its error against float64. torch has no CPU matmul that keeps an
  fp32 result from bf16 inputs, so the split product's result is rounded to bf16 and keeps bf16's error.

    python bench/bf16_cpu_probes.py --reps 9 --out docs/results/bf16-cpu-probes-2026-12-06.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment, interleaved, paired_ratio  # noqa: E402

SHAPES = [(8192, 192, 912), (8192, 384, 192), (2731, 256, 1168)]  # stage-0 in/out projections, stage-1 in_proj


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref).norm() / ref.norm())


def blocked_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Causal attention one query block at a time against the keys it can see; softmax in fp32."""
    out, n = torch.empty_like(q), q.shape[2]
    for a in range(0, n, block):
        b = min(a + block, n)
        scores = ((q[:, :, a:b] * q.shape[-1] ** -0.5) @ k[:, :, :b].transpose(-1, -2)).float()
        scores.masked_fill_(~torch.ones(b - a, b, dtype=torch.bool).tril(a), float("-inf"))
        out[:, :, a:b] = torch.softmax(scores, -1).to(v.dtype) @ v[:, :, :b]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 6, 1366, 64, generator=gen) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    runs = {"fused_fp32": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            "fused_bf16": lambda: F.scaled_dot_product_attention(qb, kb, vb, is_causal=True),
            "blocked_bf16": lambda: blocked_causal_attention(qb, kb, vb)}
    timed = interleaved(runs, args.reps)
    attention = {name: {"ms": timed["median"][name] * 1e3, "rel_error": rel_error(fn(), ref)} for name, fn in runs.items()}
    gemms = {}
    for m, kd, n in SHAPES:
        x, w = torch.randn(m, kd, generator=gen), torch.randn(kd, n, generator=gen)
        exact = x.double() @ w.double()
        xb, wb = x.bfloat16(), w.bfloat16()
        x_lo, w_lo = (x - xb.float()).bfloat16(), (w - wb.float()).bfloat16()
        xs, ws = torch.cat([xb, xb, x_lo], 1), torch.cat([wb, w_lo, wb], 0)
        runs = {"fp32": lambda: x @ w, "bf16": lambda: xb @ wb, "split_bf16": lambda: xs @ ws}
        timed = interleaved(runs, args.reps)
        gemms[f"{m}x{kd}x{n}"] = {
            "fp32_gflops": 2 * m * kd * n / timed["median"]["fp32"] / 1e9,
            "bf16_gflops": 2 * m * kd * n / timed["median"]["bf16"] / 1e9,
            "split_bf16_speed_vs_fp32": paired_ratio(timed["samples"], "fp32", "split_bf16"),
            "rel_error": {"fp32": rel_error(x @ w, exact), "bf16": rel_error(xb @ wb, exact),
                          "split_bf16_rounded_result": rel_error(xs @ ws, exact)}}
    for name, r in attention.items():
        print(f"attention {name}: {r['ms']:.1f} ms, rel. error {r['rel_error']:.1e}", file=sys.stderr)
    for name, r in gemms.items():
        print(f"GEMM {name}: fp32 {r['fp32_gflops']:.0f} GFLOP/s, bf16 {r['bf16_gflops']:.0f}, split-bf16 "
              f"{r['split_bf16_speed_vs_fp32']:.2f}x fp32; errors {r['rel_error']}", file=sys.stderr)
    emit({"command": "python " + " ".join(sys.argv), "environment": environment(), "reps": args.reps,
          "attention_1x6x1366x64_causal": attention, "gemm": gemms}, args.out)


if __name__ == "__main__":
    main()
