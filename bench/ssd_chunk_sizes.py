"""SSD tile length on a CPU: one scan per tile length, and whole-model scoring with the configured chunk
(64) against the inference tiles of `ssd.inference_chunk`, interleaved, medians over repetitions, 1 thread.
With --train: whole training steps (forward, loss, backward; fp32, fixed routers) with the configured chunk
against the training tiles of `ssd.training_chunk`, interleaved the same way.

    python bench/ssd_chunk_sizes.py --out docs/results/ssd-chunk-sizes.json
    python bench/ssd_chunk_sizes.py --train --out docs/results/ssd-train-chunk-sizes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import use_fixed_ratio_routers  # noqa: E402

from dnahnet_cli.model import layers  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402
from dnahnet_cli.model.ssd import inference_chunk, ssd_chunked, training_chunk  # noqa: E402

SCANS = [(8, 2048, 5, 32, 32), (16, 1024, 8, 16, 16), (1, 8192, 12, 64, 64)]  # (b, l, heads, headdim, d_state)
MODELS = [("cpu", 8, 2048), ("tiny", 16, 1024), ("small", 1, 8192)]
TRAIN_MODELS = [("tiny", 4, 2048), ("cpu", 4, 2048), ("small", 1, 8192)]  # the shipped models' training shape


def configured_chunk(chunk: int, headdim: int) -> int:
    """Stand-in for `ssd.inference_chunk` / `ssd.training_chunk`: always the model's configured chunk."""
    return chunk


def median_s(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scan_case(shape, reps: int) -> dict:
    b, l, h, p, n = shape
    g = torch.Generator().manual_seed(0)
    x, a = torch.randn(b, l, h, p, generator=g), -torch.rand(b, l, h, generator=g) * 0.5
    B, C = torch.randn(b, l, 1, n, generator=g), torch.randn(b, l, 1, n, generator=g)
    with torch.no_grad():
        return {q: median_s(lambda q=q: ssd_chunked(x, a, B, C, q), reps) for q in (64, 32, 16, 8)}


def _model_and_ids(preset: str, batch: int, length: int, train: bool) -> tuple[DNAHNet, torch.Tensor]:
    """A seeded model with fixed-ratio routers (same chunks in every variant) and seeded token ids."""
    torch.manual_seed(0)
    model = DNAHNet(get_preset(preset)).train(train)
    use_fixed_ratio_routers(model, model.config.ratio_targets)
    return model, torch.randint(2, 6, (batch, length), generator=torch.Generator().manual_seed(1))


def model_case(preset: str, batch: int, length: int, reps: int) -> dict:
    model, ids = _model_and_ids(preset, batch, length, train=False)
    real = layers.inference_chunk
    samples: dict[str, list[float]] = {"configured chunk": [], "inference tiles": []}
    for _ in range(reps):
        for name in samples:
            layers.inference_chunk = configured_chunk if name == "configured chunk" else real
            t = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(ids)
            samples[name].append(time.perf_counter() - t)
    layers.inference_chunk = real
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"batch": batch, "length": length, "tile": inference_chunk(model.config.chunk_size, model.config.headdim),
            "samples_s": samples, "median_s": med, "speedup": med["configured chunk"] / med["inference tiles"]}


def train_case(preset: str, batch: int, length: int, reps: int) -> dict:
    model, ids = _model_and_ids(preset, batch, length, train=True)
    real = layers.training_chunk
    samples: dict[str, list[float]] = {"configured chunk": [], "training tiles": []}

    def step(name: str) -> float:
        layers.training_chunk = configured_chunk if name == "configured chunk" else real
        t = time.perf_counter()
        model.loss(ids).loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    for name in samples:  # warm-up
        step(name)
    for rep in range(reps):
        for name in (list(samples) if rep % 2 == 0 else list(samples)[::-1]):
            samples[name].append(step(name))
    layers.training_chunk = real
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = statistics.median(a / b for a, b in zip(samples["configured chunk"], samples["training tiles"]))
    return {"batch": batch, "length": length, "tile": training_chunk(model.config.chunk_size, model.config.headdim),
            "samples_s": samples, "median_s": med, "speedup": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train", action="store_true", help="training steps: configured chunk vs training tiles")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"command": "python bench/ssd_chunk_sizes.py " + " ".join(sys.argv[1:]), "torch": torch.__version__,
              "threads": 1, "scans_median_s": {}, "models": {}}
    if args.train:
        from dnahnet_cli.model.allocator import keep_freed_memory

        keep_freed_memory()  # as the CLI does at start-up
        for preset, batch, length in TRAIN_MODELS:
            res = train_case(preset, batch, length, args.reps)
            result["models"][preset] = res
            print(f"train {preset} {batch}x{length}, tile {res['tile']}: {res['median_s']} -> {res['speedup']:.2f}x",
                  file=sys.stderr)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return
    for shape in SCANS:
        res = scan_case(shape, args.reps)
        result["scans_median_s"][str(shape)] = res
        print("scan b,l,h,p,n =", shape, {q: f"{s * 1e3:.1f} ms" for q, s in res.items()}, file=sys.stderr)
    for preset, batch, length in MODELS:
        res = model_case(preset, batch, length, args.reps)
        result["models"][preset] = res
        print(f"{preset} {batch}x{length}: {res['median_s']} -> {res['speedup']:.2f}x", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
