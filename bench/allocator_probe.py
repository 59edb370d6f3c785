"""Host-memory policy, measured: glibc malloc as it is vs keeping freed memory (`dnahnet_cli/model/allocator.py`).

malloc settings are per process, so every sample is its own worker process (DNAHNET_MALLOC=system or keep),
the two modes alternating, each worker timing a few calls after a warm-up. Cases (the shipped `cpu` model,
`--dtype auto`): scoring 16 x 2,047 nt windows (`LikelihoodEngine.loglik`, the call behind every scoring
command) at 1 and 2 threads, and one training step (forward, backward, AdamW) on 4 x 2,048 nt at 2 threads.
Reported per case and mode: the median time over all workers' calls, page faults and system CPU time per call,
and peak RSS; the ratio is system / keep.

    python bench/allocator_probe.py --workers 4 --calls 4 --out docs/results/allocator.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("system", "keep")
CASES = {"score 16 x 2,047 nt, 1 thread": ("score", 1), "score 16 x 2,047 nt, 2 threads": ("score", 2),
         "train step 4 x 2,048 nt, 2 threads": ("train", 2)}


def worker(kind: str, threads: int, calls: int) -> dict:
    """One process: apply the policy the environment asks for, warm up, time `calls` calls."""
    from dnahnet_cli.model.allocator import keep_freed_memory

    policy = keep_freed_memory()
    import torch

    torch.set_num_threads(threads)
    from dnahnet_cli.tasks.engine import LikelihoodEngine

    engine = LikelihoodEngine.load(None, device="cpu", dtype="auto")
    rng = random.Random(0)
    if kind == "score":
        seqs = ["".join(rng.choice("ACGT") for _ in range(2047)) for _ in range(16)]

        def call() -> None:
            engine.loglik(seqs)
    else:
        model = engine.model.train()
        opt = torch.optim.AdamW(model.param_groups(), lr=1e-4)
        ids = torch.randint(0, 4, (4, 2048))

        def call() -> None:
            opt.zero_grad(set_to_none=True)
            with engine._autocast():
                out = model.loss(ids)
            out.loss.backward()
            opt.step()
    call()
    before, times = resource.getrusage(resource.RUSAGE_SELF), []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"policy": policy, "dtype": engine.dtype, "times_s": times,
            "minflt_per_call": (after.ru_minflt - before.ru_minflt) / calls,
            "sys_s_per_call": (after.ru_stime - before.ru_stime) / calls,
            "user_s_per_call": (after.ru_utime - before.ru_utime) / calls,
            "maxrss_mib": after.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4, help="worker processes per case and mode")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per worker (after one warm-up)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "THREADS", "CALLS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, threads, calls = args.worker
        print(json.dumps(worker(kind, int(threads), int(calls))))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from common import environment

    results = {}
    for case in args.cases:
        kind, threads = CASES[case]
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for rep in range(args.workers):
            for mode in (MODES if rep % 2 == 0 else MODES[::-1]):  # alternate which mode goes first
                env = {**os.environ, "DNAHNET_MALLOC": mode, "OMP_NUM_THREADS": str(threads)}
                res = subprocess.run([sys.executable, __file__, "--worker", kind, str(threads), str(args.calls)],
                                     env=env, capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(res.stdout.splitlines()[-1]))
        summary = {}
        for mode, ws in runs.items():
            times = [t for w in ws for t in w["times_s"]]
            summary[mode] = {"policy": ws[0]["policy"], "median_s": statistics.median(times), "samples_s": times,
                             "minflt_per_call": statistics.median(w["minflt_per_call"] for w in ws),
                             "sys_s_per_call": statistics.median(w["sys_s_per_call"] for w in ws),
                             "user_s_per_call": statistics.median(w["user_s_per_call"] for w in ws),
                             "maxrss_mib": max(w["maxrss_mib"] for w in ws)}
        summary["ratio_system_over_keep"] = summary["system"]["median_s"] / summary["keep"]["median_s"]
        results[case] = summary
        s, k = summary["system"], summary["keep"]
        print(f"{case}: system {s['median_s']:.3f} s ({s['minflt_per_call']:,.0f} faults, sys {s['sys_s_per_call']:.2f} s,"
              f" {s['maxrss_mib']:.0f} MiB)  keep {k['median_s']:.3f} s ({k['minflt_per_call']:,.0f} faults, sys "
              f"{k['sys_s_per_call']:.2f} s, {k['maxrss_mib']:.0f} MiB)  ratio {summary['ratio_system_over_keep']:.2f}x",
              file=sys.stderr)
    if args.out:
        payload = {"command": "python bench/allocator_probe.py " + " ".join(sys.argv[1:]),
                   "workers": args.workers, "calls": args.calls, "environment": environment(), "cases": results}
        args.out.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
