"""Does one training process slow down as it runs? Median step time per 20 steps and the resident memory, for a
checkpoint trained on random 8,192-nt windows of the E. coli genome (or one fixed window), two threads, bf16
autocast where the CPU has it, the CLI's memory and OpenMP policies. Found the oneDNN per-shape kernel cache
thrashing that hnet.LENGTHS_PER_OCTAVE fixes (docs/benchmarks.md); LENGTHS_PER_OCTAVE=0 in the environment turns
the padding off for comparison.

    python bench/train_drift.py CHECKPOINT_DIR --steps 140 [--fixed-window] [--sleep-at 100]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dnahnet_cli.model.allocator import keep_freed_memory  # noqa: E402
from dnahnet_cli.model.openmp import short_spin  # noqa: E402

keep_freed_memory()
short_spin()
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dnahnet_cli.genomics.alphabet import encode  # noqa: E402
from dnahnet_cli.model import hnet  # noqa: E402
from dnahnet_cli.model.checkpoint import load_checkpoint  # noqa: E402
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402
from dnahnet_cli.train.trainer import TrainConfig, make_adamw  # noqa: E402
from common import timed_train_step  # noqa: E402

GENOME = ROOT.parent / "shared" / "data" / "ecoli_k12" / "genome.fa.gz"


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--steps", type=int, default=140)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fixed-window", action="store_true", help="the same window every step (no shape variety)")
    ap.add_argument("--sleep-at", type=int, default=0, help="pause 60 s after this step (a thermal control)")
    args = ap.parse_args()
    if "LENGTHS_PER_OCTAVE" in os.environ:
        hnet.LENGTHS_PER_OCTAVE = int(os.environ["LENGTHS_PER_OCTAVE"])
    model, _ = load_checkpoint(args.checkpoint)
    torch.set_num_threads(args.threads)
    model.train()
    opt = make_adamw(model.param_groups(), TrainConfig(lr=1e-5), torch.device("cpu"))
    dtype, _ = choose_dtype("auto", torch.device("cpu"))
    with gzip.open(GENOME, "rt") as fh:
        genome = encode("".join(line.strip() for line in fh if not line.startswith(">")))
    rng = np.random.default_rng(0)
    times: list[float] = []
    print(f"LENGTHS_PER_OCTAVE {hnet.LENGTHS_PER_OCTAVE}, {args.threads} threads, {dtype}", flush=True)
    for step in range(args.steps):
        start = 100_000 if args.fixed_window else int(rng.integers(0, len(genome) - 8192))
        ids = torch.as_tensor(genome[start:start + 8192])[None].long()
        times.append(timed_train_step(model, opt, ids, dtype == torch.bfloat16))
        if step + 1 == args.sleep_at:
            time.sleep(60)
        if (step + 1) % 20 == 0:
            print(f"steps {step - 18}-{step + 1}: median {np.median(times[-20:]):.3f} s, "
                  f"resident {resident_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    main()
