"""Training throughput (nucleotides/s) of dnaHNet vs Transformer++ vs Mamba2-only on the same data.

Every model trains on the same real-genome windows with the same optimiser (AdamW, per-stage LR groups,
gradient clipping) as `dnahnet train`. Repetitions are interleaved (the model order rotates each repetition)
and each repetition starts with a GEMM probe, so a slow machine moment shows up in the probe instead of
silently favouring one model. Reports medians; JSON on stdout (or --json FILE).

An untrained router keeps far more positions than the targets ask for (about 1/2.4 and 1/1.3 instead of 1/3 and
1/2), which overstates a hierarchical model's cost. Each multi-stage preset is therefore timed twice: with its
learned router as initialised ("tiny") and with an oracle router that cuts every N-th position at the target
ratios ("tiny+oracle", bench/common.py), which is what a trained model's cost converges to.

    python bench/train_throughput.py --presets tiny,tiny-tpp,tiny-mamba2 --seq-len 2048 --reps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from common import environment, gemm_probe, use_fixed_ratio_routers  # noqa: E402

from dnahnet_cli.train.corpus import ShardedLoader, WindowSampler, open_corpus  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

DEFAULT_GENOME = ROOT.parent / "shared" / "data" / "corpus" / "val" / "GCF_002356215.1.fa.gz"


class Runner:
    """One model + optimiser, stepping through a fixed list of batches."""

    def __init__(self, name: str, batches: list, lr: float, seed: int):
        preset, oracle = name.removesuffix("+oracle"), name.endswith("+oracle")
        torch.manual_seed(seed)
        self.model = DNAHNet(get_preset(preset)).train()
        if oracle:
            use_fixed_ratio_routers(self.model, self.model.config.ratio_targets)
        self.opt = torch.optim.AdamW(self.model.param_groups(0.05), lr=lr, betas=(0.9, 0.95))
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_multiplier"]
        self.batches, self.i, self.name = batches, 0, name
        self.params = sum(p.numel() for p in self.model.parameters())
        self.F: list[float] = []

    def step(self) -> int:
        ids, mask = self.batches[self.i % len(self.batches)]
        self.i += 1
        lo = self.model.loss(ids, mask)
        lo.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.F = lo.F
        return int((ids[:, 1:] != 0).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,tiny-tpp,tiny-mamba2")
    ap.add_argument("--genome", default=str(DEFAULT_GENOME))
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed optimiser steps per model per repetition")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per model before the first repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-oracle", action="store_true", help="do not add the +oracle variants")
    ap.add_argument("--json", default=None, help="write the JSON result here instead of stdout")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not args.no_oracle:
        presets = [v for p in presets for v in ([p, p + "+oracle"] if get_preset(p).n_stages else [p])]

    with tempfile.TemporaryDirectory() as cache:
        corpus = open_corpus([args.genome], cache, args.seq_len)
        loader = ShardedLoader(corpus, WindowSampler(len(corpus), args.seed), args.batch_size)
        n_batches = args.warmup + args.steps * args.reps
        batches = [loader.micro_batches(i * args.batch_size)[0] for i in range(n_batches)]
    runners = [Runner(p, batches, args.lr, args.seed) for p in presets]
    for r in runners:
        for _ in range(args.warmup):
            r.step()

    reps = []
    for rep in range(args.reps):
        order = runners[rep % len(runners):] + runners[:rep % len(runners)]
        row = {"rep": rep, "gemm_gflops": gemm_probe(), "order": [r.name for r in order], "nt_per_s": {}}
        for r in order:
            t0, nt = time.perf_counter(), 0
            for _ in range(args.steps):
                nt += r.step()
            row["nt_per_s"][r.name] = nt / (time.perf_counter() - t0)
        reps.append(row)
        print(f"rep {rep}: gemm {row['gemm_gflops']:.0f} GFLOP/s  " +
              "  ".join(f"{k} {v:,.0f} nt/s" for k, v in row["nt_per_s"].items()), file=sys.stderr)

    base = next((p for p in presets if p.endswith("tpp")), presets[0])
    models = {}
    for r in runners:
        vals = [row["nt_per_s"][r.name] for row in reps]
        paired = [row["nt_per_s"][r.name] / row["nt_per_s"][base] for row in reps]
        models[r.name] = {"parameters": r.params, "n_stages": r.model.config.n_stages,
                          "median_nt_per_s": statistics.median(vals), "min_nt_per_s": min(vals),
                          "max_nt_per_s": max(vals), f"median_paired_speedup_vs_{base}": statistics.median(paired),
                          "realised_ratio_last_step": [1 / f for f in r.F if f > 0]}
    result = {
        "benchmark": "train_throughput", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(), "threads": args.threads, "seq_len": args.seq_len, "batch_size": args.batch_size,
        "steps_per_rep": args.steps, "reps": args.reps, "genome": Path(args.genome).name,
        "gemm_gflops": [round(r["gemm_gflops"], 1) for r in reps], "models": models, "repetitions": reps,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
