"""Which part of a scoring forward gains from a second thread: torch.profiler self time per op at 1 and 2 threads,
and the rest (the compiled CPU kernels run through ctypes, which the profiler does not see) as wall time minus
the ops' total. Fixed-ratio routers, random sequence.

    python bench/thread_scaling_profile.py --preset small --length 8192
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import cpu_case  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model, ids = cpu_case(args.preset, args.length)
    ops, wall = {}, {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(ids)
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                model(ids)
                times.append(time.perf_counter() - start)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(ids)
        wall[threads] = statistics.median(times)
        ops[threads] = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = {t: sum(ops[t].values()) for t in (1, 2)}
    print(f"forward: {wall[1]:.3f} s on 1 thread, {wall[2]:.3f} s on 2 ({wall[1] / wall[2]:.2f}x)")
    print(f"torch ops (profiler self time): {total[1]:.3f} s -> {total[2]:.3f} s ({total[1] / total[2]:.2f}x)")
    rest = {t: wall[t] - total[t] for t in (1, 2)}
    print(f"everything else (compiled kernels, Python): {rest[1]:.3f} s -> {rest[2]:.3f} s "
          f"({rest[1] / max(rest[2], 1e-9):.2f}x)")
    for key in sorted(ops[1], key=lambda k: -ops[1][k])[:8]:
        print(f"  {key[:48]:48s} {ops[1][key]:7.3f} s -> {ops[2].get(key, 0):7.3f} s")


if __name__ == "__main__":
    main()
