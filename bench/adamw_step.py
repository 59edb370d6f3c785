"""Time of one AdamW step alone over a preset's parameters (random gradients), on one CPU thread: PyTorch's
per-parameter loop (what `dnahnet train` used on a CPU before), its multi-tensor form, and the fused kernel
(trainer.make_adamw). Medians over --reps steps after 3 warm-up steps, all in one process.

    python bench/adamw_step.py --presets tiny cpu --reps 20 --out docs/results/adamw-step-2026-12-06.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from common import emit, environment  # noqa: E402

from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

KINDS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "cpu"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for preset in args.presets:
        model = DNAHNet(get_preset(preset))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        row = {"tensors": sum(1 for _ in model.parameters()), "ms": {}}
        for kind, options in KINDS.items():
            opt = torch.optim.AdamW(model.param_groups(), lr=1e-4, **options)
            for _ in range(3):
                opt.step()
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                opt.step()
                times.append(time.perf_counter() - t)
            row["ms"][kind] = 1e3 * statistics.median(times)
        results[preset] = row
        print(f"{preset}: {row['tensors']} tensors; " + ", ".join(f"{k} {v:.2f} ms" for k, v in row["ms"].items()),
              file=sys.stderr)
    emit({"command": "python " + " ".join(sys.argv), "environment": environment(), "reps": args.reps,
          "presets": results}, args.out)


if __name__ == "__main__":
    main()
