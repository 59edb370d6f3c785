"""dnahnet benchmark suite: scoring throughput and peak memory against length, a training step, generation.

For each size family it compares dnaHNet (3,2), 1-stage dnaHNet, Transformer++ and Mamba2-only at about
equal parameter count (plus a checkpoint with its trained router and with the fixed-ratio control), all
interleaved in one process with medians over repetitions and paired ratios (performance.md §4). Every
dnaHNet timing records its realised compression per stage, the analytic FLOPs per nucleotide
(dnahnet_cli/model/flops.py) and achieved/floor against the GEMM peak measured in the same run. Results go to
one JSON file; a summary table is printed last.

    python bench/run.py --device cpu --sizes tiny small --lengths 2^10..2^13 --reps 3 --out docs/results/cpu.json
    python bench/run.py --device cuda --sizes small base --lengths 2^10..2^17 --reps 5 --out $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, gemm_probe  # noqa: E402
from generation import run_generation  # noqa: E402
from memory import cpu_peak_memory  # noqa: E402
from scoring import run_scoring  # noqa: E402
from train_step import run_train_step  # noqa: E402
from variants import FAMILIES, build, family_specs  # noqa: E402

from dnahnet_cli.model import kernels  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PARTS = ("scoring", "memory", "train", "generation")


def parse_lengths(tokens: list[str]) -> list[int]:
    """'1024', '2^13' and ranges of powers of two '2^10..2^15' (inclusive)."""
    def one(tok: str) -> int:
        return 2 ** int(tok[2:]) if tok.startswith("2^") else int(tok)
    out = []
    for tok in tokens:
        if ".." in tok:
            lo, hi = (one(t) for t in tok.split(".."))
            while lo <= hi:
                out.append(lo)
                lo *= 2
        else:
            out.append(one(tok))
    return sorted(set(out))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--sizes", nargs="+", choices=list(FAMILIES), help="default: tiny small (CPU), small base (GPU)")
    ap.add_argument("--lengths", nargs="+", help="e.g. 1024 2^13 2^10..2^15; default 2^10..2^15 (CPU), 2^10..2^17 (GPU)")
    ap.add_argument("--reps", type=int, help="timed repetitions per length (default 3 CPU, 5 GPU)")
    ap.add_argument("--out", type=Path, help="JSON results file")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: the stable setting on shared machines)")
    ap.add_argument("--dtype", choices=list(DTYPES), help="default float32 (CPU), bfloat16 autocast (GPU)")
    ap.add_argument("--kernels", choices=kernels.MODES, default="auto")
    ap.add_argument("--checkpoint", help="also time this checkpoint with its trained router and the fixed-ratio control")
    ap.add_argument("--fasta", help="score windows of this sequence instead of random DNA (use with --checkpoint)")
    ap.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    ap.add_argument("--train-length", type=int, default=8192)
    ap.add_argument("--train-reps", type=int)
    ap.add_argument("--gen-prompt", type=int, help="prompt length (default 1024 CPU, 8192 GPU)")
    ap.add_argument("--gen-tokens", type=int, help="generated nucleotides (default 128 CPU, 1024 GPU)")
    ap.add_argument("--gen-reps", type=int, default=2)
    ap.add_argument("--max-call-s", type=float, help="drop a variant from longer lengths once one forward takes "
                    "longer than this (default 150 s CPU, none GPU)")
    args = ap.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.sizes = args.sizes or (["small", "base"] if gpu else ["tiny", "small"])
    args.lengths = parse_lengths(args.lengths or (["2^10..2^17"] if gpu else ["2^10..2^15"]))
    args.reps = args.reps or (5 if gpu else 3)
    args.train_reps = args.train_reps or args.reps
    args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
    args.gen_prompt = args.gen_prompt or (8192 if gpu else 1024)
    args.gen_tokens = args.gen_tokens or (1024 if gpu else 128)
    args.max_call_s = args.max_call_s or (float("inf") if gpu else 150.0)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    kernels.set_kernels(args.kernels)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    gpu = device.type == "cuda"
    if gpu:  # one peak for the whole run, in the compute dtype, measured here
        peak = max(gemm_probe(8192, device, dtype) for _ in range(3))
        probe = lambda: gemm_probe(4096, device, dtype)  # noqa: E731
    else:  # per-repetition 1-thread fp32 probe; each group uses the median of its own probes as its peak
        peak, probe = None, gemm_probe
    ssd_chunk = kernels.SSD_CHUNK if gpu and kernels.active_kernels()["ssd"] != "torch" else None
    results = {"command": " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": environment(),
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "gpu_peak_gflops": peak, "sizes": {}}
    for size in args.sizes:
        specs = family_specs(size, args.checkpoint)
        models = {s["name"]: build(s, device) for s in specs}
        res: dict = {"parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}}
        results["sizes"][size] = res
        if "scoring" not in args.skip:
            res["scoring"] = run_scoring(specs, models, args.lengths, args.reps, device, dtype, probe, peak,
                                         ssd_chunk, args.fasta, args.max_call_s)
            if not gpu and "memory" not in args.skip:
                _cpu_memory(specs, res["scoring"], args.fasta)
        if "generation" not in args.skip:
            res["generation"] = run_generation(specs, models, args.gen_prompt, args.gen_tokens, args.gen_reps,
                                               device, dtype)
        del models
        if "train" not in args.skip:
            res["train"] = run_train_step(specs, args.train_length, args.train_reps, device, dtype, probe, peak)
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if args.out:  # after every size, so a long run that is cut off keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(summary(results))
    return results


def _cpu_memory(specs: list[dict], rows: list[dict], fasta: str | None) -> None:
    for spec in specs:
        lengths = [r["length"] for r in rows if spec["name"] in r["variants"]]
        mem = cpu_peak_memory(spec, lengths, fasta) if lengths else {}
        for r in rows:
            v = r["variants"].get(spec["name"])
            if v is not None:
                got = mem.get(r["length"])
                v["peak_mem_mib"] = got["forward_mib"] if got else None
                v["peak_rss_mib"] = got["peak_rss_mib"] if got else None
                if "error" in mem:
                    v["memory_error"] = mem["error"]


def summary(results: dict) -> str:
    """Plain-text tables: scoring nt/s (paired x vs T++), FLOPs and achieved/floor, training, generation."""
    lines = [f"\n=== dnahnet benchmark summary: {results['environment'].get('cuda') or results['environment']['processor']}"
             f", threads {results['environment']['threads']}, dtype {results['args']['dtype']},"
             f" kernels {results['environment']['kernels']}, CPU kernels "
             f"{results['environment'].get('cpu_kernels', 'torch')} ==="]
    for size, res in results["sizes"].items():
        params = res["parameters"]
        rows = res.get("scoring", [])
        if rows:
            lengths = [r["length"] for r in rows]
            lines.append(f"\n[{size}] scoring: nt/s (paired speedup vs T++); last length: ratios, GFLOP/nt, "
                         "achieved/floor, forward memory")
            lines.append(f"{'model':22s} {'params':>7s} " + " ".join(f"{'L=' + str(n):>17s}" for n in lengths))
            for name in params:
                cells = []
                for r in rows:
                    v = r["variants"].get(name)
                    x = r.get("speedup_vs_tpp", {}).get(name)
                    cells.append(f"{v['nt_per_s']:>9,.0f} (x{x:5.2f})" if v and x else
                                 f"{v['nt_per_s']:>17,.0f}" if v else f"{'-':>17s}")
                last = next((r["variants"][name] for r in reversed(rows) if name in r["variants"]), None)
                tail = ""
                if last:
                    mem = last.get("peak_mem_mib")
                    tail = (f"  ratios {'/'.join(f'{x:.2f}' for x in last['realised_ratio']) or '-':>9s}"
                            f"  {last['gflop_per_nt']:.4f} GFLOP/nt  {100 * last['achieved_over_floor']:5.1f}% of floor"
                            + (f"  {mem:,.0f} MiB" if mem is not None else ""))
                lines.append(f"{name:22s} {params[name] / 1e6:6.2f}M " + " ".join(cells) + tail)
            flop_x = rows[-1].get("flop_ratio_vs_tpp", {})
            lines.append(f"analytic FLOP ratio vs T++ at L={lengths[-1]}: "
                         + ", ".join(f"{n} x{x:.2f}" for n, x in flop_x.items()))
        train = res.get("train")
        if train:
            lines.append(f"\n[{size}] training step, L={train['length']} (peak {train['peak_gflops']:.0f} GFLOP/s)")
            for name, v in train["variants"].items():
                lines.append(f"{name:22s} {v['nt_per_s']:>10,.0f} nt/s   MFU {100 * v['mfu']:5.1f}%   "
                             f"{v['achieved_gflops']:8.1f} GFLOP/s")
        gen = res.get("generation")
        if gen:
            lines.append(f"\n[{size}] generation: {gen['new_tokens']} nt after a {gen['prompt_len']}-nt prompt")
            for name, v in gen["variants"].items():
                lines.append(f"{name:22s} {v['nt_per_s']:>8,.1f} nt/s   p50 {v['p50_ms']:7.2f} ms   p99 "
                             f"{v['p99_ms']:7.2f} ms   state {v['state_mib']:7.2f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
