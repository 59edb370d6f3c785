"""Scoring (forward) throughput of dnaHNet vs Transformer++ vs Mamba2-only at equal parameter count.

All models run in one process, interleaved, with medians over repetitions and paired ratios
(docs/benchmarks.md, ../shared/design/performance.md §4). Every dnaHNet timing records its realised
compression per stage; `--router fixed` swaps the routers for an every-R-th-position oracle.

    python bench/forward_throughput.py --size tiny --lengths 1024 4096 --reps 5 --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, paired_ratio, use_fixed_ratio_routers  # noqa: E402

from dnahnet_cli.model.lm import DNAHNet  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

FAMILIES = {"tiny": ["tiny", "tiny-1stage", "tiny-tpp", "tiny-mamba2"],
            "small": ["small", "small-1stage", "small-tpp", "small-mamba2"],
            "base": ["base", "base-1stage", "base-tpp", "base-mamba2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(FAMILIES), default="tiny")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--router", choices=["fixed", "init"], default="fixed",
                    help="fixed: oracle cutting every R-th position (default); init: the untrained router")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    models = {}
    for name in FAMILIES[args.size]:
        model = DNAHNet(get_preset(name)).to(device).eval()
        if args.router == "fixed" and model.config.n_stages:
            use_fixed_ratio_routers(model, model.config.ratio_targets)
        models[name] = model
    results = {"command": " ".join(sys.argv), "environment": environment(), "router": args.router, "runs": []}
    for length in args.lengths:
        ids = torch.randint(2, 6, (1, length), device=device)
        ids[:, 0] = 1
        ratios = {}

        def run(model, name):
            def call():
                with torch.inference_mode():
                    out = model(ids)
                ratios[name] = [float(s.mask.sum() / s.boundary_mask.sum()) for s in out.stages]
            return call

        timing = interleaved({n: run(m, n) for n, m in models.items()}, args.reps)
        base = FAMILIES[args.size][2]
        row = {"length": length, "median_s": timing["median"], "samples_s": timing["samples"],
               "probe_gflops": timing["probe_gflops"],
               "nt_per_s": {n: length / t for n, t in timing["median"].items()},
               "realised_ratio": ratios,
               "speedup_vs_tpp": {n: paired_ratio(timing["samples"], base, n) for n in models}}
        results["runs"].append(row)
        print(f"L={length:>7}  " + "  ".join(f"{n}: {row['nt_per_s'][n]:9.0f} nt/s (x{row['speedup_vs_tpp'][n]:.2f})"
                                           for n in models), file=sys.stderr, flush=True)
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    results["parameters"] = params
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\nmodel            params   " + "  ".join(f"L={r['length']:>6} nt/s (vs T++)" for r in results["runs"]))
    for n in models:
        cells = "  ".join(f"{r['nt_per_s'][n]:>12,.0f} (x{r['speedup_vs_tpp'][n]:4.2f})" for r in results["runs"])
        ratio = results["runs"][-1]["realised_ratio"][n]
        print(f"{n:14s} {params[n] / 1e6:6.2f}M   {cells}   ratios {['%.2f' % x for x in ratio]}")


if __name__ == "__main__":
    main()
