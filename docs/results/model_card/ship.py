"""Install a finished training run as the shipped default model, with the model card's summary as its metadata.

    python docs/results/model_card/ship.py /work/runs/tiny-v4 --name dnahnet-ref-cpu-v4 \
        --continues dnahnet_cli/data/default_model --hardware "..." --command "..."

Copies RUN/final/model.safetensors into dnahnet_cli/data/default_model/ and writes its config.json: the run's
format, version and model config unchanged, and a `metadata` block computed from the run (steps, nucleotides from
metrics.jsonl, training FLOPs = 3 x analytic forward FLOPs per nucleotide x nucleotides, schedule, seed, final
validation and realised ratios) instead of the run's whole train config. With --continues, the run was started
with `dnahnet train --init` from that model, whose metadata (read before it is overwritten) is kept under
`training.continues` and whose nucleotides and FLOPs are added to the totals. Run `dnahnet check
--write-reference` afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dnahnet_cli.model.checkpoint import read_checkpoint_info
from dnahnet_cli.model.flops import train_flops_per_nt

DEFAULT = Path(__file__).resolve().parents[3] / "dnahnet_cli" / "data" / "default_model"


def run_summary(run: Path) -> dict:
    """What the run did, read from its final config and its metrics log."""
    final = read_checkpoint_info(run / "final")  # the parsed config.json, checked, plus its model_config
    tc = final["metadata"]["train_config"]
    cfg = final["model_config"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("type") == "train"]
    val = [r for r in rows if r.get("type") == "val"]
    nucleotides = int(train[-1]["nucleotides"])
    per_nt = train_flops_per_nt(cfg, cfg.max_seq_len, cfg.ratio_targets or None)
    return {
        "preset": cfg.name,
        "steps": int(train[-1]["step"]),
        "seq_len_tokens": tc["seq_len"],
        "batch_size": tc["batch_size"] * tc["grad_accum"],
        "nucleotides": nucleotides,
        "training_flops": float(f"{per_nt * nucleotides:.4g}"),
        "lr": tc["lr"],
        "schedule": f"warmup {tc['warmup_frac']:.0%} + cosine to {tc['min_lr_ratio']:.0%}",
        "ratio_targets": list(cfg.ratio_targets),
        "ratio_ramp": f"from {tc['ratio_start']} over {tc['ratio_ramp_frac']:.0%} of steps" if tc["ratio_ramp_frac"] else "none",
        "alpha": cfg.ratio_alpha,
        "seed": tc["seed"],
        "final_val_bits_per_nt": round(val[-1]["val_bpn"], 4),
        "val_windows": f"{tc['val_windows']} fixed windows of {tc['seq_len'] - 1} nt",  # bits/nt depend on both
        "realised_ratios": [round(x, 2) for x in train[-1].get("realised_ratio", [])],
        "model_config": final["config"], "format": final["format"], "dnahnet_version": final["dnahnet_version"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run directory (final/, metrics.jsonl)")
    ap.add_argument("--name", required=True, help="model name, e.g. dnahnet-ref-cpu-v4")
    ap.add_argument("--continues", type=Path, help="the model the run was initialised from (--init)")
    ap.add_argument("--data", default="32 prokaryotic genomes (shared corpus/train, 110.4 Mb), reverse-complement "
                    "augmentation p=0.5; validation Synechococcus sp. NIES-970")
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--command", required=True, help="the training command, as run")
    ap.add_argument("--out", type=Path, default=DEFAULT)
    ap.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32",
                    help="store the weights rounded to bf16 (half the package size; they load as fp32 values)")
    args = ap.parse_args()

    s = run_summary(args.run)
    training = {"data": args.data, **{k: v for k, v in s.items() if k not in ("model_config", "format", "dnahnet_version", "preset")},
                "hardware": args.hardware, "command": args.command,
                "weights_dtype": "float32" if args.weights_dtype == "float32" else
                "bfloat16 (rounded from the fp32 training weights)"}
    if args.continues:
        prior = json.loads((args.continues / "config.json").read_text())["metadata"]
        training["continues"] = prior
        # the prior's own totals when it continued a model itself (a chain v3 -> v4 -> v5), else its run's
        before = prior["training"]
        nt = before.get("nucleotides_total", before["nucleotides"])
        flops = before.get("training_flops_total", before["training_flops"])
        training["nucleotides_total"] = s["nucleotides"] + int(nt)
        training["training_flops_total"] = float(f"{s['training_flops'] + flops:.4g}")
    config = {"format": s["format"], "dnahnet_version": s["dnahnet_version"], "config": s["model_config"],
              "metadata": {"name": args.name, "preset": s["preset"], "training": training,
                           "licence": "MIT (weights), trained on public NCBI RefSeq/GenBank genomes"}}
    args.out.mkdir(parents=True, exist_ok=True)
    # both files to temporaries first, then renamed: an interrupted copy never leaves a half-written model
    tmp_config, tmp_weights = args.out / "config.json.tmp", args.out / "model.safetensors.tmp"
    tmp_config.write_text(json.dumps(config, indent=2) + "\n")
    if args.weights_dtype == "float32":
        shutil.copyfile(args.run / "final" / "model.safetensors", tmp_weights)
    else:
        state = load_file(str(args.run / "final" / "model.safetensors"))
        save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}, str(tmp_weights))
    tmp_weights.replace(args.out / "model.safetensors")
    tmp_config.replace(args.out / "config.json")
    print(json.dumps(config["metadata"], indent=2))


if __name__ == "__main__":
    main()
