"""Compute-matched scaling study: dnaHNet (3,2), dnaHNet 1-stage, Transformer++, Mamba2 and StripedHyena2 at
equal training FLOPs, isoFLOP design (the paper's central comparison, performance.md §1).

For every architecture, compute budget C and model size (a width multiplier on the family's `tiny` preset), the
run trains for tokens = C / (analytic training FLOPs per nucleotide, `flops.train_step_flops`) with
`dnahnet train` (same data order, optimiser, schedule and learning rate for all: nothing is tuned per
architecture) and records validation bits/nt at the end of its budget. Per architecture it then fits:
  * the compute-optimal loss per budget: a parabola in log N through the isoFLOP points (the observed minimum
    when there are fewer than 3 sizes or the parabola opens downwards);
  * a power law loss(C) = a * C^-k through those minima (least squares in log-log), with the standard error of k.
Finished runs are never redone (their summary.json is read back), runs go in parallel up to --jobs processes of
one thread each, and --budgets / --sizes scale the same study up (e.g. on a GPU: --device cuda --jobs 1).

    python bench/scaling.py --out docs/results/scaling            # the CPU study (about 1.5 h on 2 cores)
    python bench/scaling.py --mini --out /tmp/scaling-mini        # seconds per run: the CI check of the plumbing
    python bench/scaling.py --report docs/results/scaling/scaling.json   # the markdown tables of docs/scaling.md
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dnahnet_cli.model.flops import train_step_flops  # noqa: E402
from dnahnet_cli.model.lm import DNAHNet, ModelConfig  # noqa: E402
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

ARCHS = {"dnahnet": "tiny", "dnahnet-1stage": "tiny-1stage", "tpp": "tiny-tpp", "mamba2": "tiny-mamba2",
         "sh2": "tiny-sh2"}
PAPER_EXPONENTS = {"dnahnet": 0.06, "sh2": 0.04, "tpp": 0.01}  # performance.md §1 (perplexity vs compute)
CORPUS = ROOT.parent / "shared" / "data" / "corpus"


def sized(preset: str, scale: float) -> dict:
    """ModelConfig of `preset` with every width times `scale`: d_model to multiples of 16 (16-wide heads),
    d_intermediate with a floor of 128."""
    cfg = get_preset(preset).to_dict()
    d = [max(16, 16 * round(w * scale / 16)) for w in cfg["d_model"]]
    cfg["d_model"] = d
    cfg["d_intermediate"] = [0 if f == 0 else max(128, int(f * scale)) for f in cfg["d_intermediate"]]
    cfg["num_heads"] = [w // 16 for w in d]
    cfg["rotary_emb_dim"] = [16 for _ in d]
    cfg["name"] = f"{preset}@{scale:g}"
    return cfg


def plan(archs: list[str], budgets: list[float], sizes: list[float], seq_len: int, batch: int,
         seeds: tuple[int, ...] = (0,)) -> list[dict]:
    runs = []
    for arch in archs:
        for scale in sizes:
            cfg = sized(ARCHS[arch], scale)
            mc = ModelConfig.from_dict({**cfg, "max_seq_len": seq_len})
            with torch.device("meta"):
                params = DNAHNet(mc).parameter_counts()["total"]
            per_nt = train_step_flops(mc, seq_len) / seq_len
            for budget in budgets:
                steps = max(2, math.ceil(budget / per_nt / (batch * (seq_len - 1))))
                for seed in seeds:  # the seed sets initialisation and data order; seed 0 keeps the plain name
                    runs.append({"arch": arch, "scale": scale, "budget": budget, "params": params,
                                 "flops_per_nt": per_nt, "steps": steps, "tokens": steps * batch * (seq_len - 1),
                                 "seed": seed, "name": f"{arch}-x{scale:g}-C{budget:.0e}" + (f"-s{seed}" if seed else ""),
                                 "model": cfg})
    return runs


REUSE_SETTINGS = ("seq_len", "batch", "lr", "val_windows", "device", "dtype")


def reusable(path: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Runs of an earlier scaling.json that this invocation would train identically (same run settings, data
    and validation set), by name; a run is taken only if its steps and parameter count also match and its recorded
    precision is the one `--dtype` resolves to here (runs from before precision was recorded are taken as they are)."""
    old = json.loads(path.read_text())
    settings = old.get("settings", {})
    differ = [k for k in REUSE_SETTINGS if settings.get(k) != getattr(args, k)]
    if differ or old.get("data") != [str(p) for p in args.data] or old.get("val") != [str(p) for p in args.val]:
        raise SystemExit(f"--reuse {path}: recorded with other settings ({', '.join(differ) or 'data/val'})")
    return {r["name"]: {**r, "reused_from": str(path)} for r in old["runs"]}


def reuse_run(run: dict, prior: dict | None, precision: str, any_precision: bool = False) -> dict | None:
    """`run` completed from an earlier record of it, or None when it must be trained: the record must have the
    same steps and parameter count, and the precision this invocation trains at (records from before precision
    was recorded are taken as they are; the docs say which machine made them). `any_precision` takes a record
    made at another precision too (a machine without bf16 extending a bf16 study); its precision is kept in the
    record, so every table still says how each run trained."""
    if not prior or prior["steps"] != run["steps"] or prior["params"] != run["params"]:
        return None
    prior_precision = prior.get("precision", "not recorded")
    if not any_precision and prior_precision not in (precision, "not recorded"):
        return None
    return {**run, **{k: prior[k] for k in ("val_bpn", "first_val_bpn", "reused_from")},
            "precision": prior_precision, "wall_s": prior.get("wall_s")}


def run_one(run: dict, args: argparse.Namespace, earlier: dict[str, dict] | None = None) -> dict:
    """Train one run with `dnahnet train` (or read it back when done); returns the run with val_bpn filled in."""
    precision, _ = choose_dtype(args.dtype, torch.device(args.device))
    reused = reuse_run(run, (earlier or {}).get(run["name"]), precision, args.reuse_any_precision)
    if reused:
        return reused
    out = args.out / "runs" / run["name"]
    summary = out / "summary.json"
    if not summary.exists():
        out.mkdir(parents=True, exist_ok=True)
        model = {k: v for k, v in run["model"].items() if k not in ("name", "max_seq_len")}
        toml = out / "run.toml"
        toml.write_text("\n".join([
            f'preset = "{ARCHS[run["arch"]]}"', f"seq_len = {args.seq_len}", f"batch_size = {args.batch}",
            f"steps = {run['steps']}", f"lr = {args.lr}", "warmup_frac = 0.05", f"val_windows = {args.val_windows}",
            f"eval_every = {run['steps']}", f"ckpt_every = {run['steps']}", f"log_every = {max(1, run['steps'] // 10)}",
            "keep_last = 1", f"seed = {run['seed']}", f'device = "{args.device}"', f'dtype = "{args.dtype}"',
            f'cache_dir = "{args.out / "cache"}"', "", "[model]",
            *[f"{k} = {json.dumps(v)}" for k, v in model.items()]]) + "\n")
        cmd = [sys.executable, "-m", "dnahnet_cli", "--threads", str(args.threads), "train", "--config", str(toml),
               "--out", str(out), "--quiet", "--resume"]
        for path in args.data:
            cmd += ["--data", str(path)]
        for path in args.val:
            cmd += ["--val", str(path)]
        start = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True)
        (out / "train.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise RuntimeError(f"{run['name']} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        (out / "wall.json").write_text(json.dumps({"wall_s": round(time.monotonic() - start, 1)}) + "\n")
    done = json.loads(summary.read_text())
    wall = json.loads((out / "wall.json").read_text())["wall_s"] if (out / "wall.json").exists() else None
    return {**run, "val_bpn": done["val_bpn"], "first_val_bpn": done.get("first_val_bpn"), "precision": precision,
            "wall_s": wall}


def fit_frontier(points: list[dict]) -> tuple[float, float]:
    """(compute-optimal loss, its log10 N) of one isoFLOP curve."""
    x = np.log10([p["params"] for p in points])
    y = np.array([p["val_bpn"] for p in points])
    best = int(np.argmin(y))
    if len(points) >= 3:
        a, b, c = np.polyfit(x, y, 2)
        if a > 0:
            xs = float(np.clip(-b / (2 * a), x.min(), x.max()))
            return float(a * xs * xs + b * xs + c), xs
    return float(y[best]), float(x[best])


def fit_power_law(budgets: list[float], losses: list[float]) -> dict:
    """loss = a * C^-k by least squares in log-log; k's standard error needs >= 3 budgets."""
    lx, ly = np.log(budgets), np.log(losses)
    slope, intercept = np.polyfit(lx, ly, 1)
    out = {"k": float(-slope), "a": float(math.exp(intercept)), "k_stderr": None}
    if len(budgets) >= 3:
        resid = ly - (slope * lx + intercept)
        s2 = float(resid @ resid) / (len(budgets) - 2)
        out["k_stderr"] = float(math.sqrt(s2 / float(((lx - lx.mean()) ** 2).sum())))
    return out


def mean_over_seeds(results: list[dict]) -> list[dict]:
    """One point per (architecture, size, budget): val bits/nt averaged over its seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["arch"], r["scale"], r["budget"]), []).append(r)
    return [{**runs[0], "val_bpn": float(np.mean([r["val_bpn"] for r in runs])), "seeds": len(runs)}
            for runs in groups.values()]


def seed_spread(results: list[dict]) -> dict | None:
    """Run-to-run noise: the spread of val bits/nt between seeds of the same point (None with one seed)."""
    groups: dict[tuple, list[float]] = {}
    for r in results:
        groups.setdefault((r["arch"], r["scale"], r["budget"]), []).append(r["val_bpn"])
    ranges = [max(v) - min(v) for v in groups.values() if len(v) > 1]
    if not ranges:
        return None
    return {"points": len(ranges), "mean_range": float(np.mean(ranges)), "max_range": float(max(ranges))}


def analyse(results: list[dict]) -> dict:
    fits = {}
    results = mean_over_seeds(results)
    for arch in dict.fromkeys(r["arch"] for r in results):
        mine = [r for r in results if r["arch"] == arch]
        budgets = sorted({r["budget"] for r in mine})
        frontier = []
        for budget in budgets:
            loss, log_n = fit_frontier([r for r in mine if r["budget"] == budget])
            frontier.append({"budget": budget, "loss": loss, "params_opt": 10 ** log_n})
        fits[arch] = {"frontier": frontier,
                      "power_law": fit_power_law(budgets, [f["loss"] for f in frontier]) if len(budgets) >= 2 else None,
                      "paper_k": PAPER_EXPONENTS.get(arch)}
    return fits


def plot(results: list[dict], fits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip(fits, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for arch, fit in fits.items():
        for budget in sorted({r["budget"] for r in results}):
            pts = sorted((r["params"], r["val_bpn"]) for r in results if r["arch"] == arch and r["budget"] == budget)
            if pts:
                ax1.plot(*zip(*pts), "o-", color=colours[arch], alpha=0.4 + 0.6 * (budget == max(r["budget"] for r in results)),
                         label=arch if budget == min(r["budget"] for r in results) else None)
        c = [f["budget"] for f in fit["frontier"]]
        ax2.plot(c, [f["loss"] for f in fit["frontier"]], "o", color=colours[arch], label=arch)
        if fit["power_law"]:
            grid = np.geomspace(min(c), max(c), 20)
            k, a = fit["power_law"]["k"], fit["power_law"]["a"]
            ax2.plot(grid, a * grid ** -k, "-", color=colours[arch], alpha=0.6)
    ax1.set(xscale="log", xlabel="parameters N", ylabel="val bits/nt", title="isoFLOP curves (darker = larger C)")
    ax2.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="compute-optimal val bits/nt",
            title="frontier and loss = a C^-k")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


LABELS = {"dnahnet": "dnaHNet (3,2)", "dnahnet-1stage": "dnaHNet 1-stage", "tpp": "Transformer++",
          "mamba2": "Mamba2", "sh2": "SH2"}


def report(payload: dict) -> str:
    """The markdown tables docs/scaling.md shows, from a scaling.json: every run, then the compute-optimal loss per
    budget with the fitted exponent, then dnaHNet's margin over each other architecture per budget."""
    runs, fits = payload["runs"], payload["fits"]
    lines = ["| architecture | size | parameters | budget (FLOPs) | steps | seed | val bits/nt | precision | wall min |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in sorted(runs, key=lambda r: (list(LABELS).index(r["arch"]), r["scale"], r["budget"], r.get("seed", 0))):
        wall = f"{r['wall_s'] / 60:.1f}" if r.get("wall_s") else "–"
        lines.append(f"| {LABELS[r['arch']]} | {r['scale']:g}x | {r['params']:,} | {r['budget']:.0e} | {r['steps']} "
                     f"| {r.get('seed', 0)} | {r['val_bpn']:.4f} | {r.get('precision', 'not recorded')} | {wall} |")
    spread = payload.get("seed_spread")
    if spread:
        lines += ["", f"Seed-to-seed range of val bits/nt over {spread['points']} points with two or more seeds: "
                      f"mean {spread['mean_range']:.4f}, largest {spread['max_range']:.4f}."]
    budgets = sorted({f["budget"] for fit in fits.values() for f in fit["frontier"]})
    best = {b: min(f["loss"] for fit in fits.values() for f in fit["frontier"] if f["budget"] == b) for b in budgets}
    lines += ["", "| architecture | " + " | ".join(f"{b:.0e}" for b in budgets) + " | N_opt at largest C | k | paper's k |",
              "|---|" + "---:|" * (len(budgets) + 3)]
    for arch, fit in fits.items():
        by_budget = {f["budget"]: f for f in fit["frontier"]}
        cells = [(f"**{by_budget[b]['loss']:.4f}**" if by_budget[b]["loss"] == best[b] else f"{by_budget[b]['loss']:.4f}")
                 if b in by_budget else "–" for b in budgets]
        law = fit["power_law"]
        k = "–" if not law else f"{law['k']:.4f}" + (f" ± {law['k_stderr']:.4f}" if law["k_stderr"] else "")
        paper = "–" if fit.get("paper_k") is None else f"{fit['paper_k']:g}"
        lines.append(f"| {LABELS[arch]} | " + " | ".join(cells)
                     + f" | {fit['frontier'][-1]['params_opt']:,.0f} | {k} | {paper} |")
    if "dnahnet" in fits:
        ours = {f["budget"]: f["loss"] for f in fits["dnahnet"]["frontier"]}
        others = [a for a in fits if a != "dnahnet"]
        lines += ["", "| budget | " + " | ".join(f"dnaHNet − {LABELS[a]}" for a in others) + " |",
                  "|---|" + "---:|" * len(others)]
        for b in budgets:
            cells = []
            for a in others:
                theirs = {f["budget"]: f["loss"] for f in fits[a]["frontier"]}
                cells.append(f"{round(ours[b] - theirs[b], 4) + 0.0:+.4f}" if b in ours and b in theirs else "–")
            lines.append(f"| {b:.0e} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--budgets", nargs="+", type=float, default=[3e11, 1e12, 3e12])
    ap.add_argument("--sizes", nargs="+", type=float, default=[0.25, 0.5, 1.0], help="width multipliers of tiny")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0],
                    help="one run per seed at every point (initialisation and data order); fits use the mean")
    ap.add_argument("--val-windows", type=int, default=64)
    ap.add_argument("--data", nargs="+", type=Path, default=[CORPUS / "train"])
    ap.add_argument("--val", nargs="+", type=Path, default=[CORPUS / "val"])
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (each --threads threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--mini", action="store_true",
                    help="2 budgets x 2 sizes x 2 architectures of a few steps on the shipped 20-kb example (CI)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--reuse", type=Path, action="append", default=[],
                    help="an earlier scaling.json: its runs with the same name, steps, settings and precision are read "
                         "back, not retrained (extend a study without redoing it)")
    ap.add_argument("--reuse-any-precision", action="store_true",
                    help="with --reuse: also read back runs recorded at another precision (each keeps its own in the "
                         "JSON and the tables)")
    ap.add_argument("--report", type=Path, metavar="SCALING_JSON",
                    help="print the markdown tables of a finished study (no training) and exit")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())), end="")
        return
    if args.out is None:
        ap.error("--out is required (unless --report)")
    if args.mini:
        example = ROOT / "examples" / "ecoli_k12_20kb.fa"
        args.archs, args.budgets, args.sizes = ["dnahnet", "tpp"], [2e9, 6e9], [0.5, 1.0]
        args.seq_len, args.batch, args.val_windows, args.data, args.val = 64, 2, 4, [example], [example]
    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan(args.archs, args.budgets, args.sizes, args.seq_len, args.batch, tuple(args.seeds))
    print(f"scaling: {len(runs)} runs, {sum(r['budget'] for r in runs):.2e} training FLOPs in all", file=sys.stderr)
    earlier: dict[str, dict] = {}
    for path in args.reuse:
        earlier.update(reusable(path, args))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda r: run_one(r, args, earlier), runs))
    fits = analyse(results)
    payload = {"command": " ".join(["python"] + sys.argv), "settings": {k: str(v) if isinstance(v, Path) else v
               for k, v in vars(args).items() if k not in ("data", "val", "out", "reuse", "report")},
               "reused": [str(p) for p in args.reuse],
               "data": [str(p) for p in args.data], "val": [str(p) for p in args.val],
               "runs": [{k: v for k, v in r.items() if k != "model"} for r in results], "fits": fits,
               "seed_spread": seed_spread(results)}
    (args.out / "scaling.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(mean_over_seeds(results), fits, args.out / "scaling.png")
    for arch, fit in fits.items():
        law = fit["power_law"]
        k = "NA" if not law else f"{law['k']:.4f}" + (f" ± {law['k_stderr']:.4f}" if law["k_stderr"] else "")
        line = ", ".join(f"C={f['budget']:.0e}: {f['loss']:.4f}" for f in fit["frontier"])
        print(f"{arch:15s} {line}   k = {k}", file=sys.stderr)


if __name__ == "__main__":
    main()
