"""Where one CPU training step (forward, backward, AdamW) spends its time: torch.profiler self CPU time per op.
The compiled kernels' autograd Functions show up by name (_CompiledSSDBackward, ...). Fixed-ratio routers,
random sequence, a fresh model.

    python bench/profile_train_step.py --preset cpu --length 8192 [--dtype auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import cpu_case  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--dtype", choices=["float32", "auto"], default="float32",
                    help="auto: bf16 autocast where the CPU multiplies bf16 natively, as `dnahnet train` runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, ids = cpu_case(args.preset, args.length)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype, why = choose_dtype(args.dtype, torch.device("cpu"))
    print(f"dtype: {dtype} ({why})")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model.loss(ids).loss
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    step()
    print(f"one step: {time.perf_counter() - start:.3f} s")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
