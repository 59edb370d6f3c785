"""The models a benchmark compares, as small JSON-able specs (so a subprocess can rebuild the same model).

Per size family: dnaHNet (3,2) and 1-stage dnaHNet with the fixed-ratio router control, Transformer++ and
Mamba2-only at about equal parameter count; with --checkpoint also that checkpoint twice, with its trained
router and with the fixed-ratio control, so every dnaHNet timing can be read next to its realised ratios.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from common import use_fixed_ratio_routers

from dnahnet_cli.genomics.alphabet import BOS, encode
from dnahnet_cli.model.checkpoint import load_checkpoint
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

FAMILIES = {size: [size, f"{size}-1stage", f"{size}-tpp", f"{size}-mamba2"] for size in ("tiny", "small", "base")}
ROLES = {0: "dnahnet", 1: "1stage", 2: "tpp", 3: "mamba2"}


def family_specs(size: str, checkpoint: str | None = None) -> list[dict]:
    """Variant specs of one size family (name, preset or checkpoint, router, role)."""
    specs = []
    for i, preset in enumerate(FAMILIES[size]):
        hier = i < 2
        specs.append({"name": f"{preset}[fixed]" if hier else preset, "preset": preset,
                      "router": "fixed" if hier else None, "role": ROLES[i]})
    if checkpoint:
        for router in ("trained", "fixed"):
            specs.append({"name": f"checkpoint[{router}]", "checkpoint": checkpoint, "router": router,
                          "role": "checkpoint"})
    return specs


def build(spec: dict, device: torch.device, seed: int = 0) -> DNAHNet:
    """The model of a spec, in eval mode on `device`, fixed-ratio routers installed when asked."""
    torch.manual_seed(seed)
    if "checkpoint" in spec:
        model, _ = load_checkpoint(spec["checkpoint"], device)
    else:
        model = DNAHNet(get_preset(spec["preset"])).to(device)
    if spec.get("router") == "fixed" and model.config.n_stages:
        use_fixed_ratio_routers(model, model.config.ratio_targets)
    return model.eval()


def make_ids(length: int, device: torch.device, fasta: str | None = None, seed: int = 1) -> torch.Tensor:
    """A (1, length) batch: BOS + random nucleotides, or BOS + the start of a FASTA file's sequence (real DNA
    matters for a trained router: its realised ratio on random sequence is not its ratio on genomes)."""
    if fasta:
        ids = encode(_read_bases(fasta, length - 1))
        out = np.concatenate([[BOS], ids]).astype(np.int64)
        return torch.from_numpy(out)[None].to(device)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 6, (1, length), generator=g)
    ids[:, 0] = BOS
    return ids.to(device)


def _read_bases(path: str, n: int) -> str:
    opener = gzip.open if str(path).endswith(".gz") else open
    parts, have = [], 0
    with opener(Path(path), "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                continue
            line = line.strip()
            parts.append(line)
            have += len(line)
            if have >= n:
                break
    seq = "".join(parts)
    while len(seq) < n:  # short files: repeat
        seq += seq
    return seq[:n]


def cpu_case(preset: str, length: int) -> tuple[DNAHNet, torch.Tensor]:
    """The profiling scripts' case: a fresh `preset` model with fixed-ratio routers on the CPU (eval mode) and one
    random (1, length) batch."""
    cpu = torch.device("cpu")
    return build({"preset": preset, "router": "fixed"}, cpu), make_ids(length, cpu)
