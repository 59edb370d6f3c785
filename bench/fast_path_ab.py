"""One CPU fast path on and off in the same process, alternating forward by forward: what that one path buys a
scoring forward, on the same machine state, with its effect on the log-probabilities.

Toggles: `amx-split` (split-bf16 AMX products for the fp32 islands of a bf16 run, cpu_linear.py), `amx-conv-input`
(the Mamba2 in_proj of those islands writing xBC straight into the conv input, layers.Mamba2), `amx-attention`
(full causal bf16 attention through torch's SDPA on AMX CPUs, kernels.amx_causal_attention) and `add-norm` (the
compiled residual add + RMSNorm, layers.add_norm). "off" is the code as it would run without that path alone.
Routers of a preset (random weights) are replaced by the fixed every-R-th-position control, as in
profile_forward.py; the shipped model keeps its own. Reports medians, the paired speedup (median over rounds of
t_off / t_on) and the largest and mean |difference| of the log-probabilities (the bf16 parts round differently
when anything upstream moves by an ulp, so ~1e-4 mean is the bf16 noise floor, not an error of the path).

    python bench/fast_path_ab.py --toggle amx-split --reps 7                      # the shipped model
    python bench/fast_path_ab.py --toggle amx-split --preset small --reps 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from common import emit, environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnahnet_cli.model import cpu_linear, kernels  # noqa: E402
from dnahnet_cli.model.allocator import keep_freed_memory  # noqa: E402
from dnahnet_cli.tasks.engine import LikelihoodEngine  # noqa: E402
from profile_forward import use_fixed_ratio_routers  # noqa: E402


def switch(toggle: str):
    """A function that turns the path on (True) or off (False), after checking it is available here."""
    if toggle == "amx-split":
        if cpu_linear.split_status() != "ok":
            sys.exit(f"fast_path_ab.py: split-bf16 AMX products {cpu_linear.split_status()}")
        return lambda on: setattr(cpu_linear, "_split_status", "ok" if on else "off (A/B)")
    if toggle == "amx-conv-input":
        real_into = cpu_linear.Linear.split_into
        return lambda on: setattr(cpu_linear.Linear, "split_into", real_into if on else (lambda *a: None))
    name = {"amx-attention": "amx_causal_attention", "add-norm": "cpu_add_norm"}[toggle]
    real = getattr(kernels, name)
    return lambda on: setattr(kernels, name, real if on else (lambda *a: False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toggle", required=True, choices=["amx-split", "amx-conv-input", "amx-attention", "add-norm"])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--preset", default=None, help="a preset, randomly initialised, instead of --model")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--reps", type=int, default=7, help="rounds, each one forward per side (default: %(default)s)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.preset:
        from dnahnet_cli.model.lm import DNAHNet
        from dnahnet_cli.model.presets import get_preset

        eng = LikelihoodEngine(DNAHNet(get_preset(args.preset)).eval(), device="cpu", dtype=args.dtype)
        use_fixed_ratio_routers(eng.model, eng.model.config.ratio_targets)
    else:
        eng = LikelihoodEngine.load(args.model, device="cpu", dtype=args.dtype)
    turn = switch(args.toggle)
    ids = torch.randint(0, 4, (args.batch, args.length + 1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    times: dict[str, list[float]] = {"on": [], "off": []}
    logprobs = {}
    for rep in range(args.reps + 1):  # the first round warms up (builds, packs weights)
        for side in (("on", "off") if rep % 2 else ("off", "on")):
            turn(side == "on")
            t = time.perf_counter()
            logits = eng.forward(ids, mask).logits
            elapsed = time.perf_counter() - t
            if rep:
                times[side].append(elapsed)
            logprobs[side] = torch.log_softmax(logits.float(), -1)
    turn(True)
    diff = (logprobs["on"] - logprobs["off"]).abs()
    median = {side: statistics.median(ts) for side, ts in times.items()}
    paired = statistics.median(off / on for on, off in zip(times["on"], times["off"]))
    nt = args.batch * args.length
    print(f"{args.toggle}, {args.preset or 'shipped model'}, {args.batch} x {args.length} nt, "
          f"{args.threads} thread(s), "
          f"{eng.dtype}: on {median['on']:.3f} s ({nt / median['on']:,.0f} nt/s), off {median['off']:.3f} s; "
          f"paired speedup {paired:.3f}x; |d log p| max {float(diff.max()):.1e}, mean {float(diff.mean()):.1e}")
    emit({"command": "python bench/fast_path_ab.py " + " ".join(sys.argv[1:]), "toggle": args.toggle,
          "model": args.preset or "shipped", "length": args.length, "batch": args.batch, "threads": args.threads,
          "dtype": eng.dtype, "kernels": eng.provenance["kernels"], "reps": args.reps,
          "seconds": times, "median_s": median, "paired_speedup": paired,
          "logprob_abs_difference": {"max": float(diff.max()), "mean": float(diff.mean())},
          "environment": environment()}, args.out)


if __name__ == "__main__":
    main()
