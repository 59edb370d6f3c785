"""Size the `cpu` preset: training throughput of candidate dnaHNet (3,2) sizes between `tiny` and `small`.

For each candidate (the paper's layout, widths between the two presets) it times full training steps (forward,
backward, AdamW) at the given window length and batch on one thread with `--dtype auto`, median over repetitions
after one warm-up step, and projects what a training run of --hours on one core reaches: tokens, FLOPs and
tokens per parameter. The compute-optimal choice (Chinchilla's ~20 tokens per parameter, which the CPU scaling
sweep's isoFLOP points agree with at this scale: docs/scaling.md) is the largest candidate that still sees ~20
tokens per parameter in the budget.

    python bench/cpu_preset_sizing.py --out docs/results/cpu-preset-sizing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import timed_train_step, use_fixed_ratio_routers  # noqa: E402

from dnahnet_cli.model.flops import train_step_flops  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet, ModelConfig  # noqa: E402
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402


def candidate(name: str, d: list[int], ff: list[int], main: int, d_state: int, headdim: int, heads: list[int],
              seq_len: int) -> ModelConfig:
    return ModelConfig(
        arch_layout=["m4", ["T1m4", [f"T{main}"], "m4T1"], "m4"], d_model=d, d_intermediate=ff, num_heads=heads,
        rotary_emb_dim=[16, 16, 16], window_size=[1023, 1023, -1], d_state=d_state, headdim=headdim,
        ratio_targets=[3.0, 2.0], lr_multipliers=[2.0, 1.5, 1.0], max_seq_len=seq_len, name=name)


CANDIDATES = {  # name: (d_model, d_intermediate, main layers, d_state, headdim, heads)
    "tiny": ([64, 64, 96], [128, 128, 256], 3, 16, 16, [4, 4, 4]),
    "c2m": ([96, 128, 192], [256, 384, 512], 4, 32, 32, [4, 4, 6]),
    "c4m": ([128, 160, 256], [256, 448, 704], 5, 32, 32, [4, 5, 8]),
    "c8m": ([128, 192, 320], [256, 512, 896], 7, 32, 32, [4, 6, 10]),
}


def time_steps(cfg: ModelConfig, seq_len: int, batch: int, reps: int, dtype: torch.dtype) -> list[float]:
    torch.manual_seed(0)
    model = DNAHNet(cfg)
    use_fixed_ratio_routers(model, cfg.ratio_targets)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(2, 6, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    times = [timed_train_step(model, opt, ids, dtype == torch.bfloat16) for _ in range(reps + 1)]
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hours", type=float, default=1.75, help="training time per run, one core")
    ap.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    name_, why = choose_dtype("auto", torch.device("cpu"))
    dtype = getattr(torch, name_)
    rows = {}
    for name in args.candidates:
        cfg = candidate(name, *CANDIDATES[name], seq_len=args.seq_len)
        with torch.device("meta"):
            params = DNAHNet(cfg).parameter_counts()["total"]
        per_nt = train_step_flops(cfg, args.seq_len) / args.seq_len
        times = time_steps(cfg, args.seq_len, args.batch, args.reps, dtype)
        med = statistics.median(times)
        nt_s = args.batch * args.seq_len / med
        tokens = nt_s * args.hours * 3600
        rows[name] = {"config": cfg.to_dict(), "params": params, "train_flops_per_nt": per_nt,
                      "step_seconds": times, "median_step_s": med, "train_nt_per_s": nt_s,
                      "achieved_gflops": per_nt * nt_s / 1e9, "projected_tokens": tokens,
                      "projected_flops": tokens * per_nt, "tokens_per_param": tokens / params}
        print(f"{name:6s} {params / 1e6:6.2f}M  {nt_s:7.0f} nt/s  {per_nt * nt_s / 1e9:5.1f} GFLOP/s  "
              f"{args.hours:g} h -> {tokens / 1e6:6.1f}M nt, {tokens * per_nt:.2e} FLOPs, "
              f"{tokens / params:5.1f} nt/param", file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text(json.dumps({
            "command": "python bench/cpu_preset_sizing.py " + " ".join(sys.argv[1:]), "dtype": f"{dtype} ({why})",
            "threads": 1, "seq_len": args.seq_len, "batch": args.batch, "torch": torch.__version__,
            "candidates": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
