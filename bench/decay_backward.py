"""Training steps with the SSD within-chunk backward written by hand against autograd through the same forward,
interleaved in one process, same weights and data. Three variants of `ssd.within_chunk_output` (the within-chunk
product ((C . B) * decay) @ x): "autograd" through the plain ops; "closed-form decay" (`ssd._WithinChunkDecay`,
the model's path from b0d78ff until 2026-12-05; docs/results/decay-backward.json compared these two); "closed-form
product" (`ssd._WithinChunkOutput`, the model's path since 2026-12-05, which folds the decay's backward in).

Cases: the shipped default model (`cpu` until v2, `tiny` since v3) at 4 x 2,048 nt and `tiny` at 8 x 1,024 nt (forward + backward, `--dtype auto`
policy, no optimizer step: it is the same for both). Medians over --reps, the ratio the median of per-repetition
ratios; the loss and gradient norm of both variants are compared too.

    python bench/decay_backward.py --reps 7 --threads 1 --out docs/results/decay-backward.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment  # noqa: E402

from dnahnet_cli.model import ssd  # noqa: E402
from dnahnet_cli.model.allocator import keep_freed_memory  # noqa: E402
from dnahnet_cli.model.checkpoint import load_checkpoint  # noqa: E402
from dnahnet_cli.model.default_model import resolve_model  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

CURRENT = ssd.within_chunk_output
VARIANTS = {
    "autograd": lambda cb, a, x: (cb[:, :, None] * ssd._decay_forward(a)) @ x,
    "closed-form decay": lambda cb, a, x: (cb[:, :, None] * ssd.within_chunk_decay(a)) @ x,
    "closed-form product": CURRENT,
}


def step(model: DNAHNet, ids: torch.Tensor, dtype: str) -> tuple[float, float, float]:
    """One forward + backward; returns (seconds, loss, gradient norm)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        out = model.loss(ids)
    out.loss.backward()
    seconds = time.perf_counter() - start
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    return seconds, float(out.loss.detach()), float(norm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    dtype, why = choose_dtype("auto", torch.device("cpu"))
    shipped, _ = load_checkpoint(resolve_model(None), "cpu")
    torch.manual_seed(0)
    cases = {"shipped default model, 4 x 2,048 nt": (shipped, 4, 2048), "tiny, 8 x 1,024 nt": (DNAHNet(get_preset("tiny")), 8, 1024)}
    results = {}
    for case, (model, batch, length) in cases.items():
        model.train()
        ids = torch.randint(2, 6, (batch, length), generator=torch.Generator().manual_seed(1))
        ids[:, 0] = 1
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        checks = {}
        for rep in range(args.reps + 1):  # the first round warms up
            order = list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]
            for name in order:
                ssd.within_chunk_output = VARIANTS[name]
                seconds, loss, norm = step(model, ids, dtype)
                if rep:
                    samples[name].append(seconds)
                checks[name] = (loss, norm)
        ssd.within_chunk_output = CURRENT
        speedup = {k: statistics.median(a / b for a, b in zip(samples["autograd"], v)) for k, v in samples.items()}
        results[case] = {"median_s": {k: statistics.median(v) for k, v in samples.items()}, "samples_s": samples,
                         "speedup_vs_autograd": speedup,
                         "nt_per_s": {k: batch * length / statistics.median(v) for k, v in samples.items()},
                         "loss": {k: c[0] for k, c in checks.items()}, "grad_norm": {k: c[1] for k, c in checks.items()}}
        print(f"{case}: " + ", ".join(f"{k} {results[case]['median_s'][k]:.3f} s (x{speedup[k]:.3f})" for k in VARIANTS),
              file=sys.stderr)
    payload = {"command": "python bench/decay_backward.py " + " ".join(sys.argv[1:]), "dtype": f"{dtype} ({why})",
               "threads": args.threads, "reps": args.reps, "environment": environment(), "cases": results}
    emit(payload, args.out)


if __name__ == "__main__":
    main()
