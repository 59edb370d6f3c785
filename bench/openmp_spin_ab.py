"""GNU OpenMP's spin before idle workers sleep, A/B on a two-thread scoring forward: fresh processes alternating
GOMP_SPINCOUNT values (libgomp's default 300000 and the 10000 the dnahnet command sets), paired by repetition.

    python bench/openmp_spin_ab.py --reps 6 --out docs/results/openmp-spin-only-ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import statistics, sys, time, torch
sys.path.insert(0, {bench!r})
from variants import cpu_case
torch.set_num_threads({threads})
model, ids = cpu_case({preset!r}, {length})
with torch.inference_mode():
    model(ids)
    times = []
    for _ in range(3):
        start = time.perf_counter(); model(ids); times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--spins", nargs="+", default=["300000", "10000"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), threads=args.threads, preset=args.preset,
                        length=args.length)
    samples: dict[str, list[float]] = {s: [] for s in args.spins}
    for rep in range(args.reps):
        order = args.spins if rep % 2 == 0 else args.spins[::-1]
        for spin in order:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            env["GOMP_SPINCOUNT"] = spin
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            samples[spin].append(float(res.stdout.split()[-1]))
    base = args.spins[0]
    result = {"command": " ".join(["python", "bench/openmp_spin_ab.py", *sys.argv[1:]]), "preset": args.preset,
              "length": args.length, "threads": args.threads, "samples_s": samples,
              "median_s": {s: statistics.median(v) for s, v in samples.items()},
              "paired_speedup_vs_first": {s: statistics.median(a / b for a, b in zip(samples[base], v))
                                          for s, v in samples.items()}}
    for s in args.spins:
        print(f"GOMP_SPINCOUNT={s}: median {result['median_s'][s]:.3f} s, paired speedup over {base}: "
              f"{result['paired_speedup_vs_first'][s]:.2f}x", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
