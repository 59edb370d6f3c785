"""Learning curves for the model card: validation bits/nt against training FLOPs (dnaHNet vs Transformer++).

    python docs/results/model_card/plot_curves.py runs/ref-dnahnet runs/ref-tpp docs/results/model_card/curves
    python docs/results/model_card/plot_curves.py --earlier docs/results/model_card/v2/curves.json \
        runs/ref-dnahnet runs/ref-tpp docs/results/model_card/curves

--earlier adds the curves of an earlier model card (its curves.json, committed) as dashed lines, so a new
default model is seen against the one it replaces; they are not copied into the new NAME.json.

Training FLOPs = 3 x analytic forward FLOPs per nucleotide (dnahnet_cli/model/flops.py, at the run's training
window and the model's target compression ratios) x nucleotides processed; writes NAME.png and NAME.json.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dnahnet_cli.model.checkpoint import read_checkpoint_info  # noqa: E402
from dnahnet_cli.model.flops import flops_per_nt  # noqa: E402


def curve(run: Path) -> dict:
    cfg = read_checkpoint_info(run / "final")["model_config"]
    per_nt = 3 * flops_per_nt(cfg, cfg.max_seq_len, cfg.ratio_targets or None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    nts = {r["step"]: r["nucleotides"] for r in rows if r.get("type") == "train" and "nucleotides" in r}
    tokens_per_step = max(nts.values()) / max(nts) if nts else 0
    points = [(r["step"] * tokens_per_step * per_nt, r["val_bpn"]) for r in rows if r.get("type") == "val"]
    return {"name": cfg.name, "train_flops_per_nt": per_nt, "points": points}


LABELS = {"cpu": "dnaHNet (cpu, 2.0M)", "cpu-tpp": "Transformer++ (cpu-tpp, 1.9M)",
          "tiny": "dnaHNet (tiny, 0.89M)", "tiny-tpp": "Transformer++ (tiny-tpp, 0.89M)"}


def colour(name: str) -> str:
    """One colour per architecture family, so an earlier run and its successor read as a pair."""
    return "C1" if name.endswith("-tpp") else "C0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--earlier", type=Path, help="an earlier curves.json to draw dashed, for reference")
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (metrics.jsonl and final/)")
    ap.add_argument("out", help="output stem: writes OUT.png and OUT.json")
    args = ap.parse_args()
    curves = [curve(r) for r in args.runs]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    earlier = json.loads(args.earlier.read_text()) if args.earlier else []
    for c in earlier:
        ax.plot([p[0] for p in c["points"]], [p[1] for p in c["points"]], ls="--", marker=".", alpha=0.55,
                color=colour(c["name"]), label=f"{LABELS.get(c['name'], c['name'])}, earlier run")
    for c in curves:
        ax.plot([p[0] for p in c["points"]], [p[1] for p in c["points"]], marker="o", color=colour(c["name"]),
                label=LABELS.get(c["name"], c["name"]))
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation bits per nucleotide (NIES-970)")
    ax.set_title("dnaHNet vs Transformer++: validation loss against training compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=120)
    Path(f"{args.out}.json").write_text(json.dumps(curves, indent=2) + "\n")


if __name__ == "__main__":
    main()
