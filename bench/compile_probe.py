"""torch.compile (inductor) on the CPU, measured before deciding not to adopt it (docs/benchmarks.md).

Compiles either the elementwise pieces of the Mamba2 path (conv+SiLU, gated RMSNorm, RMSNorm, SSD decays) or the
whole Mamba2 mixer, with dynamic shapes, and times `small` at 8,192 nt (bf16 autocast, fixed routers, 1 thread)
eager vs compiled, interleaved; prints the compile time, the paired speed-up and the max logit difference.

    python bench/compile_probe.py --what pieces --reps 4
    python bench/compile_probe.py --what mixer --reps 4

--what train instead compiles every Isotropic stack (encoders, decoders, main network; stage 0 with static shapes,
the inner stages' varying lengths dynamic) and times training steps (forward, loss, backward; fp32, 1 thread) of
`tiny` at 4 x 2,048 nt, the shipped model's training shape, eager vs compiled, with the largest relative
gradient difference.

    python bench/compile_probe.py --what train --reps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import use_fixed_ratio_routers  # noqa: E402

from dnahnet_cli.model import layers, ssd  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=["pieces", "mixer", "train"], default="pieces")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == "train":
        train_probe(args.reps)
        return
    torch.manual_seed(0)
    model = DNAHNet(get_preset("small")).eval()
    use_fixed_ratio_routers(model, model.config.ratio_targets)
    ids = torch.randint(2, 6, (1, args.length))

    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(ids).logits

    if args.what == "pieces":
        eager = dict(conv=layers.causal_depthwise_conv_silu, gnorm=layers.GatedRMSNorm.forward,
                     norm=layers.RMSNorm.forward, decay=ssd._decay_forward)
    else:
        eager = dict(mixer=layers.Mamba2.forward)
    compiled = {k: torch.compile(v, dynamic=True) for k, v in eager.items()}

    def use(fns: dict) -> None:
        if "mixer" in fns:
            layers.Mamba2.forward = fns["mixer"]
            return
        layers.causal_depthwise_conv_silu, ssd._decay_forward = fns["conv"], fns["decay"]
        layers.GatedRMSNorm.forward, layers.RMSNorm.forward = fns["gnorm"], fns["norm"]

    use(eager)
    ref = run()
    use(compiled)
    t = time.perf_counter()
    out = run()
    compile_s = time.perf_counter() - t
    samples: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.reps):
        for name, fns in (("eager", eager), ("compiled", compiled)):
            use(fns)
            t = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - t)
    ratio = statistics.median(a / b for a, b in zip(samples["eager"], samples["compiled"]))
    print(f"{args.what}: first compiled call {compile_s:.1f} s; eager {statistics.median(samples['eager']):.3f} s, "
          f"compiled {statistics.median(samples['compiled']):.3f} s, speed-up {ratio:.2f}x; "
          f"max |logit difference| {float((out - ref).abs().max()):.1e}")


def train_probe(reps: int, preset: str = "tiny", batch: int = 4, length: int = 2048) -> None:
    import copy

    from dnahnet_cli.model.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI does
    torch.manual_seed(0)
    eager = DNAHNet(get_preset(preset)).train()
    use_fixed_ratio_routers(eager, eager.config.ratio_targets)
    compiled = copy.deepcopy(eager)
    for name, stack in compiled.named_modules():
        if isinstance(stack, layers.Isotropic):
            stack.forward = torch.compile(stack.forward, dynamic=".main" in f".{name}")
    ids = torch.randint(2, 6, (batch, length), generator=torch.Generator().manual_seed(1))

    def step(model) -> torch.Tensor:
        model.loss(ids).loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        return grads

    t = time.perf_counter()
    g_compiled = step(compiled)
    compile_s = time.perf_counter() - t
    g_eager = step(eager)
    samples: dict[str, list[float]] = {"eager": [], "compiled": []}
    for rep in range(reps):
        for name in (["eager", "compiled"] if rep % 2 == 0 else ["compiled", "eager"]):
            t = time.perf_counter()
            step(eager if name == "eager" else compiled)
            samples[name].append(time.perf_counter() - t)
    ratio = statistics.median(a / b for a, b in zip(samples["eager"], samples["compiled"]))
    print(f"train {preset} {batch}x{length}: first compiled step {compile_s:.1f} s; eager "
          f"{statistics.median(samples['eager']):.3f} s, compiled {statistics.median(samples['compiled']):.3f} s, "
          f"speed-up {ratio:.2f}x; gradient relative difference "
          f"{float((g_compiled - g_eager).norm() / g_eager.norm()):.1e}")


if __name__ == "__main__":
    main()
