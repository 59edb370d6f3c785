"""Where one inference forward of a checkpoint spends its time on a CPU (torch.profiler, self CPU time).

    python bench/profile_forward.py                      # the shipped default model, 8 x 2,048 nt, 1 thread
    python bench/profile_forward.py --compile-mamba      # also: torch.compile each Mamba2 layer and compare
    python bench/profile_forward.py --preset cpu-tpp --batch 1 --length 8192   # a preset, randomly initialised

With --compile-mamba it times the first compiled call (compile included), two more compiled calls, and the
largest logit difference against eager.
"""

from __future__ import annotations

import argparse
import time

import torch

from dnahnet_cli.model.layers import Mamba2
from dnahnet_cli.tasks.engine import LikelihoodEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--preset", default=None, help="profile this preset, randomly initialised, instead of --model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile-mamba", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.preset:
        from dnahnet_cli.model.lm import DNAHNet
        from dnahnet_cli.model.presets import get_preset

        eng = LikelihoodEngine(DNAHNet(get_preset(args.preset)).eval(), device="cpu")
    else:
        eng = LikelihoodEngine.load(args.model, device="cpu", dtype="float32")
    ids = torch.randint(0, 4, (args.batch, args.length + 1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    ref = eng.forward(ids, mask).logits
    t = time.perf_counter()
    eng.forward(ids, mask)
    dt = time.perf_counter() - t
    print(f"eager forward {args.batch} x {args.length}: {dt:.3f} s ({args.batch * args.length / dt:,.0f} nt/s)")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        eng.forward(ids, mask)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if args.compile_mamba:
        layers = [m for m in eng.model.modules() if isinstance(m, Mamba2)]
        for m in layers:
            m.forward = torch.compile(m.forward, dynamic=True)
        t = time.perf_counter()
        out = eng.forward(ids, mask).logits
        print(f"compiled {len(layers)} Mamba2 layers: first call {time.perf_counter() - t:.1f} s, "
              f"max |logit difference| {(out - ref).abs().max().item():.2e}")
        for _ in range(2):
            t = time.perf_counter()
            eng.forward(ids, mask)
            print(f"compiled forward: {time.perf_counter() - t:.3f} s")


if __name__ == "__main__":
    main()
