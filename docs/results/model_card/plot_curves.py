"""Learning curves for the model card: validation bits/nt against training FLOPs (dnaHNet vs Transformer++).

    python docs/results/model_card/plot_curves.py runs/ref-dnahnet runs/ref-tpp docs/results/model_card/curves
    python docs/results/model_card/plot_curves.py --earlier docs/results/model_card/v2/curves.json \
        runs/ref-dnahnet runs/ref-tpp docs/results/model_card/curves

--earlier adds the curves of an earlier model card (its curves.json, committed) as dashed lines, so a new
default model is seen against the one it replaces; they are not copied into the new NAME.json.

--continues RUN=CURVES_JSON says that RUN was started with `dnahnet train --init` from the final weights of the
run whose curve (same model name) is in CURVES_JSON: RUN's curve becomes that curve followed by RUN's own points,
shifted by the earlier run's training FLOPs (RUN's step-0 validation, of the same weights, is dropped), so the
plot and NAME.json show the model's whole training; --earlier then leaves out its dashed copy.

    python docs/results/model_card/plot_curves.py --earlier docs/results/model_card/v3/curves.json \
        --continues runs/tiny-v4=docs/results/model_card/v3/curves.json runs/tiny-v4 runs/tpp-v4 \
        docs/results/model_card/curves

--new-windows RUN says that a continued RUN validates on other windows than its predecessor (e.g. it trains at a
longer length): its step-0 point (the predecessor's weights on the new windows) is kept, and its points are drawn
as their own segment (open markers), so the jump between the two window sets is not read as learning.

    python docs/results/model_card/plot_curves.py --continues "tiny@8192=v6.jsonl=v5/curves.json" \
        --new-windows "tiny@8192=v6.jsonl" "tiny@8192=v6.jsonl" docs/results/model_card/curves

A run can also be given as PRESET@SEQ_LEN=METRICS.jsonl, e.g. tiny-tpp@2048=docs/results/model_card/tpp.train_metrics.jsonl:
the committed log of a run and the preset and training length it ran with, so the plot can be redrawn from the
repository alone (--continues then names the same string before its last '=').

Training FLOPs = 3 x analytic forward FLOPs per nucleotide (dnahnet_cli/model/flops.py, at the run's training
window and the model's target compression ratios) x nucleotides processed; writes NAME.png and NAME.json.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dnahnet_cli.errors import DnahnetError  # noqa: E402
from dnahnet_cli.model.checkpoint import read_checkpoint_info  # noqa: E402
from dnahnet_cli.model.config import ModelConfig  # noqa: E402
from dnahnet_cli.model.flops import train_flops_per_nt  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402


def run_config_and_log(run: str) -> tuple[ModelConfig, Path]:
    """A run directory (final/config.json, metrics.jsonl), or PRESET@SEQ_LEN=METRICS.jsonl for a committed log."""
    spec, sep, log = run.partition("=")
    if sep:
        preset, at, seq_len = spec.partition("@")
        if not at or not seq_len.isdigit():
            raise SystemExit(f"{run!r}: expected PRESET@SEQ_LEN=METRICS.jsonl (SEQ_LEN a whole number)")
        try:
            cfg = get_preset(preset)
        except DnahnetError as exc:
            raise SystemExit(f"{run!r}: {exc}") from None
        cfg.max_seq_len = int(seq_len)
        return cfg, Path(log)
    return read_checkpoint_info(Path(run) / "final")["model_config"], Path(run) / "metrics.jsonl"


def curve(run: str) -> dict:
    cfg, log = run_config_and_log(run)
    per_nt = train_flops_per_nt(cfg, cfg.max_seq_len, cfg.ratio_targets or None)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    nts = {r["step"]: r["nucleotides"] for r in rows if r.get("type") == "train" and "nucleotides" in r}
    tokens_per_step = max(nts.values()) / max(nts) if nts else 0
    points = [(r["step"] * tokens_per_step * per_nt, r["val_bpn"]) for r in rows if r.get("type") == "val"]
    return {"name": cfg.name, "seq_len": cfg.max_seq_len, "train_flops_per_nt": per_nt, "points": points}


def continued(run_curve: dict, prior_curves: list[dict], run: str, new_windows: bool = False) -> dict:
    """The prior run's curve of the same model, then this run's points shifted by the prior's final FLOPs (with
    new_windows, this run's step-0 point too: it is the prior's weights measured on other windows)."""
    prior = [c for c in prior_curves if c["name"] == run_curve["name"]]
    if len(prior) != 1:
        raise SystemExit(f"--continues {run}: expected one curve named {run_curve['name']!r}, found {len(prior)}")
    offset = prior[0]["points"][-1][0]
    own = [(offset + f, v) for f, v in run_curve["points"] if f > 0 or new_windows]
    return {**run_curve, "continues": {"prior_train_flops": offset, "prior_points": len(prior[0]["points"]),
                                       "new_windows": new_windows},
            "points": [tuple(p) for p in prior[0]["points"]] + own}


def segments(c: dict) -> list[list]:
    """The curve's points, split where a continued run switched to other validation windows."""
    cont = c.get("continues") or {}
    if not cont.get("new_windows"):
        return [c["points"]]
    k = cont["prior_points"]
    return [c["points"][:k], c["points"][k:]]


LABELS = {"cpu": "dnaHNet (cpu, 2.0M)", "cpu-tpp": "Transformer++ (cpu-tpp, 1.9M)",
          "tiny": "dnaHNet (tiny, 0.89M)", "tiny-tpp": "Transformer++ (tiny-tpp, 0.89M)"}


def colour(name: str) -> str:
    """One colour per architecture family, so an earlier run and its successor read as a pair."""
    return "C1" if name.endswith("-tpp") else "C0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--earlier", type=Path, help="an earlier curves.json to draw dashed, for reference")
    ap.add_argument("--continues", action="append", default=[], metavar="RUN=CURVES_JSON",
                    help="RUN was initialised from the final weights of a run in CURVES_JSON (repeatable)")
    ap.add_argument("--new-windows", action="append", default=[], metavar="RUN",
                    help="the continued RUN validates on other windows than its predecessor (repeatable)")
    ap.add_argument("runs", nargs="+", help="run directories (metrics.jsonl and final/), or "
                    "PRESET@SEQ_LEN=METRICS.jsonl (a committed *.train_metrics.jsonl and the run's preset and length)")
    ap.add_argument("out", help="output stem: writes OUT.png and OUT.json")
    args = ap.parse_args()
    priors = {}
    for spec in args.continues:
        run, sep, prior = spec.rpartition("=")
        if not sep:
            raise SystemExit(f"--continues {spec!r}: expected RUN=CURVES_JSON")
        priors[run] = json.loads(Path(prior).read_text())
    for run in set(args.new_windows) - set(priors):
        ap.error(f"--new-windows {run!r}: not a --continues run (only a continued run can switch validation windows)")
    curves = []
    for r in args.runs:
        c = curve(r)
        curves.append(continued(c, priors[r], r, r in args.new_windows) if r in priors else c)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    continued_names = {c["name"] for c in curves if "continues" in c}
    earlier = json.loads(args.earlier.read_text()) if args.earlier else []
    earlier = [c for c in earlier if c["name"] not in continued_names]
    for c in earlier:
        ax.plot([p[0] for p in c["points"]], [p[1] for p in c["points"]], ls="--", marker=".", alpha=0.55,
                color=colour(c["name"]), label=f"{LABELS.get(c['name'], c['name'])}, earlier run")
    for c in curves:
        first, *rest = segments(c)
        ax.plot([p[0] for p in first], [p[1] for p in first], marker="o", color=colour(c["name"]),
                label=LABELS.get(c["name"], c["name"]))
        for seg in rest:  # the continuation validated on other (longer) windows
            ax.plot([p[0] for p in seg], [p[1] for p in seg], marker="o", mfc="white", color=colour(c["name"]),
                    label=f"{LABELS.get(c['name'], c['name'])}, continued at {c['seq_len']:,} nt "
                          f"(its own validation windows)")
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
