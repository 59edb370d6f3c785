"""Where one inference forward of a checkpoint spends its time on a CPU (torch.profiler, self CPU time).

    python bench/profile_forward.py                      # the shipped default model, 8 x 2,048 nt, 1 thread
    python bench/profile_forward.py --compile-mamba      # also: torch.compile each Mamba2 layer and compare
    python bench/profile_forward.py --preset cpu-tpp --batch 1 --length 8192   # a preset, randomly initialised
    python bench/profile_forward.py --preset small --batch 1 --length 8192 --dtype auto --fixed-routers --by-shape
    python bench/profile_forward.py --batch 1 --length 8192 --dtype auto --kernel-split   # also time the C kernels

--fixed-routers cuts every R-th position (the benchmarks' control: an untrained router keeps about half);
--by-shape lists the GEMMs and attention calls by input shape, so each can be traced to its stage.
--kernel-split times the compiled C kernels (called through ctypes, so the profiler cannot see them) in the
unprofiled forwards: milliseconds per forward for each, median over --reps forwards. The host-memory policy
is applied as the dnahnet command applies it (DNAHNET_MALLOC=system to leave malloc as it is).
With --compile-mamba it times the first compiled call (compile included), two more compiled calls, and the
largest logit difference against eager.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from dnahnet_cli.model import cpu_attention, cpu_mixer
from dnahnet_cli.model.allocator import keep_freed_memory
from dnahnet_cli.model.layers import Mamba2
from dnahnet_cli.tasks.engine import LikelihoodEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import use_fixed_ratio_routers  # noqa: E402

# the compiled kernels' entry points, as the model calls them (module attributes, so they can be wrapped)
KERNELS = ((cpu_mixer, "conv_silu"), (cpu_mixer, "ssd_scan"), (cpu_mixer, "gated_rmsnorm"), (cpu_attention, "attend"))
HEAVY_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
             "mkldnn::_linear_pointwise")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--preset", default=None, help="profile this preset, randomly initialised, instead of --model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", help="auto, float32 or bfloat16 (default: %(default)s)")
    ap.add_argument("--fixed-routers", action="store_true", help="cut every R-th position (a preset's target ratios)")
    ap.add_argument("--by-shape", action="store_true", help="also list GEMMs and attention calls by input shape")
    ap.add_argument("--kernel-split", action="store_true", help="time the compiled C kernels per forward")
    ap.add_argument("--reps", type=int, default=9, help="unprofiled forwards timed (default: %(default)s)")
    ap.add_argument("--compile-mamba", action="store_true")
    args = ap.parse_args()
    print(f"host memory: {keep_freed_memory()}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.preset:
        from dnahnet_cli.model.lm import DNAHNet
        from dnahnet_cli.model.presets import get_preset

        eng = LikelihoodEngine(DNAHNet(get_preset(args.preset)).eval(), device="cpu", dtype=args.dtype)
    else:
        eng = LikelihoodEngine.load(args.model, device="cpu", dtype=args.dtype)
    if args.fixed_routers:
        use_fixed_ratio_routers(eng.model, eng.model.config.ratio_targets)
    print(f"precision: {eng.dtype} ({eng.dtype_reason})")
    ids = torch.randint(0, 4, (args.batch, args.length + 1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    ref = eng.forward(ids, mask).logits
    times, kernel_ms = [], defaultdict(list)
    for _ in range(args.reps):
        with timed_kernels(args.kernel_split) as spent:
            t = time.perf_counter()
            eng.forward(ids, mask)
            times.append(time.perf_counter() - t)
        for name, seconds in spent.items():
            kernel_ms[name].append(seconds * 1e3)
    dt = statistics.median(times)
    print(f"eager forward {args.batch} x {args.length}: {dt:.3f} s ({args.batch * args.length / dt:,.0f} nt/s; "
          f"median of {args.reps})")
    for name, ms in kernel_ms.items():
        median = statistics.median(ms)
        print(f"  compiled {name} (its input conversions included): {median:.1f} ms per forward "
              f"({median / dt / 10:.1f} %)")
    from torch.profiler import ProfilerActivity, profile

    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof:
        eng.forward(ids, mask)
    profiled = time.perf_counter() - t
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    seen = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
    # the compiled C kernels (the Mamba2 mixer, attention) run through ctypes, where the profiler sees nothing
    print(f"profiled forward {profiled * 1e3:.1f} ms, of which torch ops {seen * 1e3:.1f} ms; the rest "
          f"({(profiled - seen) * 1e3:.1f} ms) is the compiled C kernels (and Python), invisible to the profiler")
    if args.by_shape:
        rows = sorted((e for e in prof.key_averages(group_by_input_shape=True) if e.key in HEAVY_OPS),
                      key=lambda e: -e.self_cpu_time_total)
        for e in rows[:25]:
            print(f"{e.self_cpu_time_total / 1e3:9.1f} ms  x{e.count:<3d} {e.key.removeprefix('aten::')} {e.input_shapes}")
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


@contextlib.contextmanager
def timed_kernels(enabled: bool):
    """Within the block, each compiled kernel entry point adds its wall time to the yielded dict (seconds)."""
    spent: dict[str, float] = defaultdict(float)
    if not enabled:
        yield spent
        return
    originals = [(module, name, getattr(module, name)) for module, name in KERNELS]

    def timer(name, fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return call

    for module, name, fn in originals:
        setattr(module, name, timer(name, fn))
    try:
        yield spent
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


if __name__ == "__main__":
    main()
