"""Learning curves for the model card: validation bits/nt against training FLOPs (dnaHNet vs Transformer++).

    python docs/results/model_card/plot_curves.py runs/ref-dnahnet runs/ref-tpp docs/results/model_card/curves

Training FLOPs = 3 x analytic forward FLOPs per nucleotide (dnahnet_cli/model/flops.py, at the run's training
window and the model's target compression ratios) x nucleotides processed; writes NAME.png and NAME.json.
"""

import json
import sys
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


def main() -> None:
    *runs, out = sys.argv[1:]
    curves = [curve(Path(r)) for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        label = {"cpu": "dnaHNet (cpu, ratios 3,2)", "cpu-tpp": "Transformer++ (cpu-tpp)", "tiny": "dnaHNet (tiny)",
                 "tiny-tpp": "Transformer++ (tiny-tpp)"}.get(c["name"], c["name"])
        ax.plot([p[0] for p in c["points"]], [p[1] for p in c["points"]], marker="o", label=label)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation bits per nucleotide (NIES-970)")
    ax.set_title("dnaHNet vs Transformer++: validation loss against training compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{out}.png", dpi=120)
    Path(f"{out}.json").write_text(json.dumps(curves, indent=2) + "\n")


if __name__ == "__main__":
    main()
