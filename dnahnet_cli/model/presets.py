"""Named model configurations, from a CPU smoke model to the ~200M paper-scale 2-stage dnaHNet,
each with Transformer++ and Mamba2-only baselines of matching parameter count.

dnaHNet presets follow the paper's layout `["m4", ["T1m4", ["TN"], "m4T1"], "m4"]`: four Mamba2 layers on each
side at nucleotide resolution (no attention there: it was the single largest CPU cost, and the paper has none),
one attention layer plus four Mamba2 layers on each side of stage 1, a Transformer main network; per-stage
target ratios (3, 2) and outer-stage learning-rate multipliers. One-stage presets drop stage 1. Main-network
depths are set so each family's dnaHNet keeps the parameter count of its Transformer++ baseline.
"""

from __future__ import annotations

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.config import ModelConfig


def _hnet2(name, main_layers, d, d_ff, d_state, headdim, heads, rotary, window, max_len) -> ModelConfig:
    return ModelConfig(
        arch_layout=["m4", ["T1m4", [f"T{main_layers}"], "m4T1"], "m4"],
        d_model=d, d_intermediate=d_ff, num_heads=heads, rotary_emb_dim=rotary, window_size=window,
        d_state=d_state, headdim=headdim, ratio_targets=[3.0, 2.0], lr_multipliers=[2.0, 1.5, 1.0],
        max_seq_len=max_len, name=name,
    )


def _hnet1(name, main_layers, d, d_ff, d_state, headdim, heads, rotary, window, max_len) -> ModelConfig:
    return ModelConfig(
        arch_layout=["m4", [f"T{main_layers}"], "m4"],
        d_model=d, d_intermediate=d_ff, num_heads=heads, rotary_emb_dim=rotary, window_size=window,
        d_state=d_state, headdim=headdim, ratio_targets=[3.0], lr_multipliers=[1.5, 1.0],
        max_seq_len=max_len, name=name,
    )


def _iso(name, layout, d, d_ff, d_state, headdim, heads, rotary, max_len) -> ModelConfig:
    return ModelConfig(
        arch_layout=[layout], d_model=[d], d_intermediate=[d_ff], num_heads=[heads], rotary_emb_dim=[rotary],
        window_size=[-1], d_state=d_state, headdim=headdim, ratio_targets=[], lr_multipliers=[1.0],
        max_seq_len=max_len, name=name,
    )


def _sh2(name, repeats, d, d_ff, heads, rotary, max_len) -> ModelConfig:
    """StripedHyena 2 style baseline (hyena.py): Hyena-SE, -MR, -LI and one rotary attention layer, striped and
    repeated (E R L T), each with a SwiGLU MLP, at the width of the family's Transformer++."""
    return _iso(name, "E1R1L1T1" * repeats, d, d_ff, 64, 64, heads, rotary, max_len)


PRESETS: dict[str, ModelConfig] = {
    # CPU models: tests, CI, quick experiments; `tiny` was the architecture of the default models v3-v6
    "tiny": _hnet2("tiny", 3, [64, 64, 96], [128, 128, 256], 16, 16, [4, 4, 4], [16, 16, 16], [127, 127, -1], 1024),
    "tiny-1stage": _hnet1("tiny-1stage", 3, [64, 96], [128, 256], 16, 16, [4, 4], [16, 16], [127, -1], 1024),
    "tiny-tpp": _iso("tiny-tpp", "T8", 96, 256, 16, 16, 4, 16, 1024),
    "tiny-mamba2": _iso("tiny-mamba2", "m12", 96, 0, 16, 16, 4, 16, 1024),
    "tiny-sh2": _sh2("tiny-sh2", 2, 96, 256, 4, 16, 1024),
    # ~2M: sized for a ~2-hour run on a 2-core CPU (bench/cpu_preset_sizing.py); the architecture of the default
    # models v2 and v8-v10 (v10: 1.94e15 FLOPs at 8,192 nt, docs/model-card.md)
    "cpu": _hnet2("cpu", 4, [80, 96, 128], [192, 256, 352], 32, 32, [5, 6, 8], [16, 16, 16], [1023, 1023, -1], 8192),
    "cpu-tpp": _iso("cpu-tpp", "T9", 128, 352, 32, 32, 8, 16, 8192),
    # ~20M: GPU minutes, or CPU hours
    "small": _hnet2("small", 8, [192, 256, 384], [512, 768, 1024], 64, 64, [4, 4, 6], [32, 32, 32],
                    [1023, 1023, -1], 8192),
    "small-1stage": _hnet1("small-1stage", 9, [256, 384], [768, 1024], 64, 64, [4, 6], [32, 32], [1023, -1], 8192),
    "small-tpp": _iso("small-tpp", "T12", 384, 1024, 64, 64, 6, 32, 8192),
    "small-mamba2": _iso("small-mamba2", "m21", 384, 0, 64, 64, 6, 32, 8192),
    "small-sh2": _sh2("small-sh2", 3, 384, 1024, 6, 32, 8192),
    # ~200M: paper scale (GPU)
    "base": _hnet2("base", 11, [512, 768, 1024], [1408, 2048, 2816], 128, 64, [8, 12, 16], [32, 32, 32],
                   [1023, 1023, -1], 8192),
    "base-1stage": _hnet1("base-1stage", 12, [768, 1024], [2048, 2816], 128, 64, [12, 16], [32, 32], [1023, -1], 8192),
    "base-tpp": _iso("base-tpp", "T16", 1024, 2816, 128, 64, 16, 32, 8192),
    "base-mamba2": _iso("base-mamba2", "m30", 1024, 0, 128, 64, 16, 32, 8192),
    "base-sh2": _sh2("base-sh2", 4, 1024, 2816, 16, 32, 8192),
}

DESCRIPTIONS = {
    "tiny": "0.89M 2-stage dnaHNet (3,2); the default models v3-v6",
    "tiny-1stage": "CPU smoke model, 1-stage dnaHNet (3)",
    "tiny-tpp": "Transformer++ baseline matching tiny",
    "tiny-mamba2": "Mamba2-only baseline matching tiny",
    "tiny-sh2": "StripedHyena2-style baseline matching tiny (SE-MR-LI-attention striped)",
    "cpu": "~2M 2-stage dnaHNet (3,2) sized for CPU training; the shipped default model's architecture (v10)",
    "cpu-tpp": "Transformer++ baseline matching cpu",
    "small": "~20M 2-stage dnaHNet (3,2)",
    "small-1stage": "~20M 1-stage dnaHNet (3)",
    "small-tpp": "~20M Transformer++ baseline",
    "small-mamba2": "~20M Mamba2-only baseline",
    "small-sh2": "~20M StripedHyena2-style baseline",
    "base": "~200M 2-stage dnaHNet (3,2), ~30% of parameters in encoders/decoders",
    "base-1stage": "~200M 1-stage dnaHNet (3)",
    "base-tpp": "~200M Transformer++ baseline",
    "base-mamba2": "~200M Mamba2-only baseline",
    "base-sh2": "~200M StripedHyena2-style baseline",
}


# (parameters, of which in encoders/decoders) per preset, for `dnahnet presets` without importing torch;
# tests/test_cli_model.py checks every entry against the model built from the preset.
PARAMETERS = {
    "tiny": (890_816, 532_864),
    "tiny-1stage": (570_944, 225_344),
    "tiny-tpp": (887_520, 0),
    "tiny-mamba2": (732_816, 0),
    "tiny-sh2": (924_768, 0),
    "cpu": (1_994_248, 1_093_096),
    "cpu-tpp": (1_920_896, 0),
    "small": (21_635_024, 7_162_576),
    "small-1stage": (19_589_312, 3_456_704),
    "small-tpp": (21_247_872, 0),
    "small-mamba2": (19_832_436, 0),
    "small-sh2": (21_471_360, 0),
    "base": (201_927_872, 58_044_864),
    "base-1stage": (186_070_080, 30_124_096),
    "base-tpp": (205_566_976, 0),
    "base-mamba2": (198_044_992, 0),
    "base-sh2": (206_361_600, 0),
}


def get_preset(name: str) -> ModelConfig:
    """A fresh copy of a named configuration (callers may modify it)."""
    if name not in PRESETS:
        raise DnahnetError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig.from_dict(PRESETS[name].to_dict())
