"""The model's configuration: architecture in the official H-Net notation plus training defaults.

Kept free of torch so that commands which only read or list configurations (`dnahnet presets`, `--help`)
start without importing it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dnahnet_cli.genomics.alphabet import VOCAB_SIZE

# one group of a layout string: a layer kind (m/M Mamba2, t/T attention, e/E r/R l/L Hyena) and its count
LAYOUT_PATTERN = re.compile(r"([mMtTeErRlL])(\d+)")


# Bounds far above any model this tool can run, so that a damaged or hostile config.json is refused in one line
# instead of building 10^8 layers or allocating exabytes.
MAX_STAGES, MAX_LAYERS = 8, 1024
# seeds every command takes (init, train, segment's permutation null): numpy's range, which torch takes too
MAX_SEED = 2**32 - 1
SIZE_LIMITS = {"d_conv": 64, "expand": 16, "chunk_size": 1 << 16, "vocab_size": 1 << 16, "max_seq_len": 1 << 24,
               "d_model": 1 << 16, "d_intermediate": 1 << 18, "num_heads": 1024, "rotary_emb_dim": 1 << 16,
               "window_size": 1 << 24, "d_state": 4096, "headdim": 4096}
HYENA_LIMITS = {"short_len": 64, "se_len": 1 << 12, "mr_len": 1 << 16, "li_modes": 1024}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_layout(node: Any, depth: int = 0) -> None:
    """arch_layout as the official H-Net nests it: [encoder, inner, decoder] per stage, the innermost a list of
    layer groups such as "T8" or "m4T1"."""
    if not isinstance(node, list) or not node:
        raise ValueError(f"config.arch_layout: expected a non-empty list at depth {depth}, not {node!r}")
    if len(node) == 3 and isinstance(node[1], list):
        parts = [node[0], node[2]]
        _check_layout(node[1], depth + 1)
    else:
        parts = node
    for part in parts:
        if not isinstance(part, str) or not re.fullmatch(rf"(?:{LAYOUT_PATTERN.pattern})*", part):
            raise ValueError(f"config.arch_layout: {part!r} is not a layer group such as 'm4', 'T8' or 'm4T1'")


def per_stage(value: Any, stage: int) -> Any:
    return value[stage] if isinstance(value, (list, tuple)) else value


@dataclass
class ModelConfig:
    """Architecture in the official H-Net notation plus dnahnet's training defaults.

    arch_layout: e.g. ["T1m4", ["T1m4", ["T8"], "m4T1"], "m4T1"] (2 stages) or ["T12"] (isotropic).
    Per-stage lists run outer -> inner and have n_stages + 1 entries; ssm/attention values may be scalars.
    """

    arch_layout: list
    d_model: list[int]
    d_intermediate: list[int]
    num_heads: list[int]
    rotary_emb_dim: list[int]
    window_size: list[int]
    d_state: Any = 64
    headdim: Any = 64
    d_conv: int = 4
    expand: int = 2
    chunk_size: int = 64  # SSD tile size; math-neutral (64 is fastest on CPU, kernels use 256)
    hyena: dict = field(default_factory=dict)  # HyenaMixer options (short_len, se_len, mr_len, li_modes)
    vocab_size: int = VOCAB_SIZE
    ratio_targets: list[float] = field(default_factory=list)  # per-stage target compression N_s
    ratio_alpha: float = 0.02  # weight of the ratio loss (dnaHNet: 0.01-0.02)
    lr_multipliers: list[float] = field(default_factory=list)  # per stage, outer first
    max_seq_len: int = 8192  # training window length; the default scoring window
    name: str = "custom"

    @property
    def n_stages(self) -> int:
        depth, node = 0, self.arch_layout
        while len(node) == 3:
            depth, node = depth + 1, node[1]
        return depth

    def ssm_kwargs(self, stage: int) -> dict:
        return dict(d_state=per_stage(self.d_state, stage), headdim=per_stage(self.headdim, stage),
                    d_conv=self.d_conv, expand=self.expand, chunk_size=self.chunk_size)

    def attn_kwargs(self, stage: int) -> dict:
        return dict(num_heads=self.num_heads[stage], rotary_dim=self.rotary_emb_dim[stage],
                    window=self.window_size[stage])

    def validate(self) -> None:
        """Every value a config.json may hold checked before a model is built: a wrong one is a one-line error, not a
        traceback from deep inside torch, and no size may ask for more than any real model could use."""
        _check_layout(self.arch_layout)
        if self.n_stages > MAX_STAGES or self.n_layers() > MAX_LAYERS:
            raise ValueError(f"config.arch_layout: {self.n_stages} stages and {self.n_layers()} layers; at most "
                             f"{MAX_STAGES} stages and {MAX_LAYERS} layers")
        for key in ("d_conv", "expand", "chunk_size", "vocab_size", "max_seq_len"):  # JSON may hold anything
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SIZE_LIMITS[key]:
                raise ValueError(f"config.{key} must be an integer from 1 to {SIZE_LIMITS[key]:,}, not {value!r}")
        if self.max_seq_len < 2:
            raise ValueError(f"config.max_seq_len must be at least 2 (BOS + 1 nucleotide), not {self.max_seq_len}")
        s = self.n_stages
        for key in ("d_model", "d_intermediate", "num_heads", "rotary_emb_dim", "window_size"):
            values = getattr(self, key)
            if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError(f"config.{key} must be a list of integers, not {values!r}")
            if len(values) != s + 1:
                raise ValueError(f"config.{key} needs {s + 1} entries for a {s}-stage layout")
            lowest = {"d_model": 1, "window_size": -1}.get(key, 0)
            bad = [v for v in values if not lowest <= v <= SIZE_LIMITS[key]]
            if bad:
                raise ValueError(f"config.{key} = {values}: each must be from {lowest} to {SIZE_LIMITS[key]:,}"
                                 + (" (-1: global attention)" if key == "window_size" else ""))
        if any(b < a for a, b in zip(self.d_model, self.d_model[1:])):
            raise ValueError("config.d_model must be non-decreasing from outer to inner stages")
        for key in ("d_state", "headdim"):  # one integer, or one per stage
            value = getattr(self, key)
            values = value if isinstance(value, list) else [value]
            if not values or not all(_is_int(v) and 1 <= v <= SIZE_LIMITS[key] for v in values) or (
                    isinstance(value, list) and len(value) != s + 1):
                raise ValueError(f"config.{key} must be a positive integer or a list of {s + 1}, not {value!r}")
        if not _is_number(self.ratio_alpha) or not 0 <= self.ratio_alpha < math.inf:
            raise ValueError(f"config.ratio_alpha must be a finite number >= 0, not {self.ratio_alpha!r}")
        for key in ("ratio_targets", "lr_multipliers"):
            values = getattr(self, key)
            if not isinstance(values, list) or not all(_is_number(v) and 0 < v < math.inf for v in values):
                raise ValueError(f"config.{key} must be a list of finite positive numbers, not {values!r}")
        self._check_hyena()
        if len(self.ratio_targets) != s:
            raise ValueError(f"config.ratio_targets needs {s} entries (one per stage)")
        if any(n <= 1 for n in self.ratio_targets):
            raise ValueError("ratio targets must be > 1 (the ratio loss diverges at N = 1)")
        if self.lr_multipliers and len(self.lr_multipliers) != s + 1:
            raise ValueError(f"config.lr_multipliers needs {s + 1} entries")
        for stage, (d, kinds) in enumerate(zip(self.d_model, self._stage_kinds())):  # what the layers would assert
            if "t" in kinds:  # attention layers at this stage
                heads, rotary = self.num_heads[stage], self.rotary_emb_dim[stage]
                if heads < 1 or d % heads:
                    raise ValueError(f"config.d_model[{stage}] = {d} is not divisible by config.num_heads[{stage}] "
                                     f"= {heads}")
                if rotary % 2 or rotary > d // heads:
                    raise ValueError(f"config.rotary_emb_dim[{stage}] = {rotary} must be even and at most the head "
                                     f"width d_model/num_heads = {d // heads}")
            if "m" in kinds:  # Mamba2 layers at this stage
                headdim = per_stage(self.headdim, stage)
                if not isinstance(headdim, int) or headdim < 1 or (self.expand * d) % headdim:
                    raise ValueError(f"config.expand x d_model[{stage}] = {self.expand * d} is not divisible by "
                                     f"config.headdim = {headdim!r}")

    def n_layers(self) -> int:
        """Layers the layout builds, all stages together."""
        def count(node: Any) -> int:
            if isinstance(node, str):
                return sum(int(n) for _, n in LAYOUT_PATTERN.findall(node))
            return sum(count(part) for part in node) if isinstance(node, list) else 0
        return count(self.arch_layout)

    def _check_hyena(self) -> None:
        if not isinstance(self.hyena, dict):
            raise ValueError(f"config.hyena must be an object of Hyena options, not {self.hyena!r}")
        unknown = sorted(set(self.hyena) - set(HYENA_LIMITS))
        if unknown:
            raise ValueError(f"config.hyena: unknown option(s) {', '.join(unknown)} (known: {', '.join(HYENA_LIMITS)})")
        for key, value in self.hyena.items():
            if not _is_int(value) or not 1 <= value <= HYENA_LIMITS[key]:
                raise ValueError(f"config.hyena.{key} must be an integer from 1 to {HYENA_LIMITS[key]:,}, "
                                 f"not {value!r}")

    def _stage_kinds(self) -> list[set[str]]:
        """The layer kinds (lowercase layout letters: m Mamba2, t attention, ...) of each stage, outer first."""
        def letters(text: str) -> set[str]:  # groups such as "T1m4"; a zero count ("T0") builds no layer
            return {c.lower() for c, n in LAYOUT_PATTERN.findall(text) if int(n) > 0}

        kinds, node = [], self.arch_layout
        while isinstance(node, list) and len(node) == 3:
            kinds.append(letters(f"{node[0]}{node[2]}"))
            node = node[1]
        kinds.append(letters("".join(map(str, node))))
        return kinds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**data)
