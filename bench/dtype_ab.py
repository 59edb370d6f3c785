"""fp32 against bf16 autocast on this checkout, per model: one worker process (bench/_fastpath_worker.py, fixed
every-R-th-position routers, 1 thread) alternates the two precisions on the same model and input, repetition by
repetition; medians and the median of per-repetition ratios (fp32 / bf16, > 1 = bf16 faster).

    python bench/dtype_ab.py --kind train --cases tiny:8x1024 cpu:4x2048 small:1x8192 --reps 3 \
        --out docs/results/dtype-train.json
    python bench/dtype_ab.py --kind score --cases small:1x8192 small-tpp:1x8192 --reps 3 \
        --out docs/results/dtype-score.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402
from cpu_fast_path import ROOT, Worker  # noqa: E402

DTYPES = ("float32", "bfloat16")


def parse_case(text: str) -> tuple[str, int, int]:
    """'small:1x8192' -> ('small', batch 1, length 8192)."""
    preset, shape = text.split(":")
    batch, length = shape.split("x")
    return preset, int(batch), int(length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["score", "train"], required=True)
    ap.add_argument("--cases", nargs="+", required=True, help="PRESET:BATCHxLENGTH")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    worker = Worker(ROOT)
    results = {}
    try:
        for case in args.cases:
            preset, batch, length = parse_case(case)
            jobs = {d: dict(kind=args.kind, preset=preset, length=length, batch=batch, threads=1, dtype=d) for d in DTYPES}
            for job in jobs.values():
                worker.time(job)  # warm-up (builds the model)
            samples: dict[str, list[float]] = {d: [] for d in DTYPES}
            for rep in range(args.reps):
                for d in (DTYPES if rep % 2 == 0 else DTYPES[::-1]):
                    samples[d].append(worker.time(jobs[d]))
            ratio = statistics.median(a / b for a, b in zip(samples["float32"], samples["bfloat16"]))
            results[case] = {"median_s": {d: statistics.median(v) for d, v in samples.items()}, "samples_s": samples,
                             "fp32_over_bf16": ratio}
            print(f"{args.kind} {case}: fp32 {results[case]['median_s']['float32']:.3f} s, bf16 "
                  f"{results[case]['median_s']['bfloat16']:.3f} s, x{ratio:.2f}", file=sys.stderr)
    finally:
        worker.close()
    emit({"command": "python bench/dtype_ab.py " + " ".join(sys.argv[1:]), "environment": environment(),
          "kind": args.kind, "reps": args.reps, "cases": results}, args.out)


if __name__ == "__main__":
    main()
