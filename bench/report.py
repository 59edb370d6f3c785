"""Render a bench/run.py JSON file as the markdown tables of docs/benchmarks*.md; --flops prints the
analytic FLOP table of the presets (no run needed).

    python bench/report.py docs/results/cpu-1thread.json > /tmp/tables.md
    python bench/report.py --flops
"""

from __future__ import annotations

import json
import sys


def _f(x, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def render(results: dict) -> str:
    env = results["environment"]
    out = [f"Run {results.get('started', '?')} – {results.get('finished', '?')}: "
           f"{env.get('cuda') or env['processor']}, torch {env['torch']}, {env['threads']} thread(s), "
           f"dtype {results['args']['dtype']}, kernels `{env['kernels']}` (CUDA paths), CPU kernels "
           f"`{env.get('cpu_kernels', 'torch')}`, load average at start "
           f"{', '.join(f'{x:.1f}' for x in env.get('load_average', []))}.",
           f"Command: `{results['command']}`", ""]
    for size, res in results["sizes"].items():
        params = res["parameters"]
        rows = res.get("scoring", [])
        if rows:
            out += [f"#### {size}: scoring throughput (batch 1, median of {results['args']['reps']})", "",
                    "| model | params | L | nt/s (median) | best nt/s | speedup vs T++ (paired) | FLOP ratio vs T++ "
                    "| speedup vs Mamba2 (paired) | realised ratios | GFLOP/nt exec / Chinchilla | achieved GFLOP/s "
                    "| achieved/floor | forward peak memory MiB |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
            for name in params:
                for r in rows:
                    v = r["variants"].get(name)
                    if v is None:
                        continue
                    ratios = " / ".join(f"{x:.2f}" for x in v["realised_ratio"]) or "-"
                    out.append(
                        f"| {name} | {params[name] / 1e6:.2f}M | {r['length']:,} | {v['nt_per_s']:,.0f} | "
                        f"{v['best_nt_per_s']:,.0f} | {_f(r.get('speedup_vs_tpp', {}).get(name), '{:.2f}x')} | "
                        f"{_f(r.get('flop_ratio_vs_tpp', {}).get(name), '{:.2f}x')} | "
                        f"{_f(r.get('speedup_vs_mamba2', {}).get(name), '{:.2f}x')} | {ratios} | "
                        f"{v['gflop_per_nt']:.4f} / {v['gflop_per_nt_chinchilla']:.4f} | {v['achieved_gflops']:.1f} | "
                        f"{100 * v['achieved_over_floor']:.1f}% | {_f(v.get('peak_mem_mib'))} |")
            probes = [p for r in rows for p in r["probe_gflops"]]
            if probes:
                out.append(f"\nGEMM probe over the sweep: {min(probes):.0f}–{max(probes):.0f} GFLOP/s "
                           f"(floor = analytic FLOPs / the probe median of each length's repetitions).")
            skipped = {n: why for r in rows for n, why in r.get("skipped", {}).items()}
            for n, why in skipped.items():
                out.append(f"Skipped at longer lengths: {n} ({why}).")
            out.append("")
        train = res.get("train")
        if train:
            out += [f"#### {size}: training step at L = {train['length']:,} (forward + backward + AdamW, "
                    f"median of {train['reps']})", "",
                    "| model | nt/s | realised ratios | model GFLOP/nt (3x fwd) | achieved GFLOP/s | MFU | peak memory MiB |",
                    "|---|---:|---|---:|---:|---:|---:|"]
            for name, v in train["variants"].items():
                ratios = " / ".join(f"{x:.2f}" for x in v["realised_ratio"] if x) or "-"
                out.append(f"| {name} | {v['nt_per_s']:,.0f} | {ratios} | {v['train_gflop_per_nt']:.4f} | "
                           f"{v['achieved_gflops']:.1f} | {100 * v['mfu']:.1f}% | {_f(v.get('peak_mem_mib'))} |")
            out += ["", f"MFU against the GEMM probe ({train['peak_gflops']:.0f} GFLOP/s).", ""]
        gen = res.get("generation")
        if gen:
            out += [f"#### {size}: generation ({gen['new_tokens']} nt sampled after a {gen['prompt_len']:,}-nt "
                    f"prompt, {gen['reps']} runs)", "",
                    "| model | nt/s | p50 ms/nt | p99 ms/nt | max ms/nt | prefill s | state MiB |",
                    "|---|---:|---:|---:|---:|---:|---:|"]
            for name, v in gen["variants"].items():
                out.append(f"| {name} | {v['nt_per_s']:,.1f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | "
                           f"{v['max_ms']:.2f} | {v['prefill_s']:.3f} | {v['state_mib']:.2f} |")
            out.append("")
    return "\n".join(out)


def flop_table(lengths=(8192, 131072, 1048576)) -> str:
    """Forward GFLOP/nt of every preset family at target ratios, executed convention (x = T++ / model),
    with the Chinchilla-convention value at the first two lengths."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dnahnet_cli.model.flops import flops_per_nt, forward_flops
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset
    from dnahnet_cli.model.ssd import training_chunk
    from variants import FAMILIES

    head = " | ".join(f"L={n:,} GFLOP/nt (x)" for n in lengths)
    out = [f"| preset | params | {head} | Chinchilla @{lengths[0]:,} / @{lengths[1]:,} |",
           "|---|---:|" + "---|" * len(lengths) + "---|"]
    for size, names in FAMILIES.items():
        tpp = get_preset(f"{size}-tpp")
        for name in names:
            cfg = get_preset(name)
            params = sum(p.numel() for p in DNAHNet(cfg).parameters()) / 1e6
            cells = [f"{flops_per_nt(cfg, n) / 1e9:.4f} ({flops_per_nt(tpp, n) / flops_per_nt(cfg, n):.1f})" for n in lengths]
            chin = [f"{flops_per_nt(cfg, n, convention='chinchilla') / 1e9:.4f}" for n in lengths[:2]]
            out.append(f"| {name} | {params:.1f}M | " + " | ".join(cells) + f" | {' / '.join(chin)} |")
    out.append("")
    for name in ("tiny", "cpu", "small"):  # the chunk_size-64 convention against the scoring path's shorter tiles
        cfg = get_preset(name)
        ratio = forward_flops(cfg, lengths[0]).total / forward_flops(cfg, lengths[0], inference_tiles=True).total
        out.append(f"- {name}: the chunk_size convention counts {100 * (ratio - 1):.0f} % more FLOPs at "
                   f"{lengths[0]:,} nt than the reference path's scoring tiles")
        n = cfg.max_seq_len  # and against the shorter tiles a training step runs (ssd.training_chunk)
        tile = training_chunk(cfg.chunk_size, cfg.headdim)  # the presets use one head width throughout
        ratio = forward_flops(cfg, n).total / forward_flops(cfg, n, ssd_chunk=tile).total
        out.append(f"- {name}: ... and {100 * (ratio - 1):.0f} % more at its training length {n:,} nt than a "
                   f"training step's {tile}-nt tiles")
    for size in FAMILIES:  # where the Mamba2-only model's flat cost drops below the 2-stage dnaHNet's
        hnet, mamba = get_preset(size), get_preset(f"{size}-mamba2")
        lo, hi = lengths[0], 1 << 26
        if flops_per_nt(hnet, hi) <= flops_per_nt(mamba, hi):
            out.append(f"- {size}: dnaHNet needs fewer FLOPs/nt than {size}-mamba2 up to at least {hi:,} nt")
            continue
        while hi - lo > 1024:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if flops_per_nt(hnet, mid) <= flops_per_nt(mamba, mid) else (lo, mid)
        out.append(f"- {size}: {size}-mamba2 needs fewer FLOPs/nt than dnaHNet beyond ~{hi / 1000:,.0f}K nt")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
    if not sys.argv[1:] or {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__.strip())
        sys.exit(0 if sys.argv[1:] else 2)
    if sys.argv[1:] == ["--flops"]:
        print(flop_table())
    for path in sys.argv[1:]:
        if path != "--flops":
            print(render(json.load(open(path))))
