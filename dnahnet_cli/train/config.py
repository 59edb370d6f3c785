"""`dnahnet train`'s options: the TrainConfig fields, their checked kinds, and how a TOML file (`--config`), the
command line and the Python API map onto them. Unknown keys, wrong types and values that would fail inside
training are usage errors here, before any data is read."""

from __future__ import annotations

import dataclasses
import math
import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.config import MAX_SEED


@dataclass
class TrainConfig:
    """Every training option; the CLI, a TOML file (`--config`) and checkpoints all map onto these fields."""

    data: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    preset: str | None = None
    init: str | None = None  # checkpoint directory to start from (weights + architecture)
    model: dict = field(default_factory=dict)  # ModelConfig field overrides (TOML [model] table)
    out: str = "run"
    cache_dir: str | None = None  # default: <out>/cache
    seq_len: int = 8192  # tokens per window including BOS (the paper trains on windows up to 8192 nt)
    batch_size: int = 8  # windows per micro-batch per process
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_frac: float = 0.05
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # <= 0 disables clipping (the norm is still logged)
    lr_multipliers: list[float] | None = None  # per stage, outer first; default: the model config's
    alpha: float | None = None  # ratio-loss weight; default: the model config's ratio_alpha
    ratio_targets: list[float] | None = None  # final per-stage targets; default: the model config's
    ratio_start: float = 1.5  # targets ramp from here (never below 1.2) to the final values ...
    ratio_ramp_frac: float = 0.2  # ... over this fraction of the steps
    rc_prob: float = 0.5
    min_length: int = 64
    max_n_frac: float = 0.5
    val_windows: int = 64  # fixed, evenly spaced validation windows (<= 0: all)
    eval_every: int = 100
    log_every: int = 10
    ckpt_every: int = 200
    keep_last: int = 3
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 autocast where matmuls are native bf16 (AMX/AVX512-BF16 CPU, bf16 GPU)
    threads: int | None = None
    resume: bool = False
    quiet: bool = False


# Options that may change when a run is resumed without breaking the exact continuation of its maths.
RUNTIME_FIELDS = {"out", "cache_dir", "eval_every", "log_every", "ckpt_every", "keep_last", "device", "threads",
                  "resume", "quiet", "data", "val", "val_windows"}

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What each kind of TrainConfig annotation accepts, and how an error names it
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (_is_number, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "a table ([model])"),
    "list[str]": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a path or a list of paths"),
    "list[float]": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
}
# Each option's kind, read from its annotation ("float | None" -> "float"), so a new field is checked too
_FIELD_KINDS = {f.name: str(f.type).removesuffix(" | None") for f in dataclasses.fields(TrainConfig)}
_NUMERIC_FIELDS = sorted(k for k, kind in _FIELD_KINDS.items() if kind in ("float", "list[float]"))


def _type_problem(key: str, value: Any) -> str | None:
    """What is wrong with the type of option `key` (None: nothing)."""
    accepts, expected = _KINDS[_FIELD_KINDS[key]]
    return None if accepts(value) else expected


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a train.toml: top-level keys are TrainConfig fields (dashes allowed), [model] overrides the architecture."""
    p = Path(path)
    if not p.is_file():
        raise DnahnetError(f"config file not found: {p}")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DnahnetError(f"{p}: not a valid TOML file ({exc})") from None
    out: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in raw.items():
        k = key.replace("-", "_")
        if k not in known:
            raise DnahnetError(f"{p}: unknown option {key!r} (known: {', '.join(sorted(known))})")
        if k in out:  # seq-len and seq_len: the second silently won
            raise DnahnetError(f"{p}: {k.replace('_', '-')} is set twice (as {k} and {k.replace('_', '-')})")
        if k in ("data", "val") and isinstance(value, str):
            value = [value]
        problem = _type_problem(k, value)
        if problem:
            raise DnahnetError(f"{p}: {key} must be {problem}, got {value!r}")
        out[k] = value
    return out


def make_config(overrides: dict[str, Any]) -> TrainConfig:
    """TrainConfig from a dict, checking types loosely and values strictly (user mistakes -> DnahnetError)."""
    given = {k: _plain(v) for k, v in overrides.items() if v is not None}
    for k, v in given.items():
        problem = _type_problem(k, v)
        if problem:
            raise DnahnetError(f"option {k.replace('_', '-')} must be {problem}, got {v!r}")
    cfg = TrainConfig(**given)
    not_finite = [k for k in _NUMERIC_FIELDS if any(not math.isfinite(x) for x in _as_list(getattr(cfg, k)))]
    if not_finite:
        raise DnahnetError(f"every numeric option must be finite, got nan or inf for {', '.join(not_finite)}")
    checks = [
        (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}"),
        (cfg.eps > 0, f"eps must be > 0, got {cfg.eps}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.alpha is None or cfg.alpha >= 0, f"--alpha must be >= 0, got {cfg.alpha}"),
        (cfg.lr_multipliers is None or all(m > 0 for m in cfg.lr_multipliers),
         f"lr_multipliers must be > 0, got {cfg.lr_multipliers}"),
        (0 <= cfg.seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED}, got {cfg.seed}"),
        (not (cfg.preset and cfg.init), "give either preset or init, not both (a config file sets both?)"),
        (cfg.threads is None or cfg.threads >= 1, f"threads must be >= 1, got {cfg.threads}"),
        (cfg.seq_len >= 2, f"--seq-len must be at least 2 (BOS + 1 nucleotide), got {cfg.seq_len}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.grad_accum >= 1, f"grad_accum must be >= 1, got {cfg.grad_accum}"),
        (cfg.steps >= 1, f"--steps must be >= 1, got {cfg.steps}"),
        (cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}"),
        (0 <= cfg.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
        (0 <= cfg.warmup_frac < 1, "warmup_frac must be in [0, 1)"),
        (0 <= cfg.rc_prob <= 1, "rc_prob must be in [0, 1]"),
        (0 <= cfg.ratio_ramp_frac <= 1, "ratio_ramp_frac must be in [0, 1]"),
        *((getattr(cfg, k) >= 1, f"--{k.replace('_', '-')} must be >= 1, got {getattr(cfg, k)}")
          for k in ("log_every", "eval_every", "ckpt_every")),
        (cfg.keep_last >= 1, "keep_last must be >= 1"),
        (cfg.dtype in ("auto", "fp32", "bf16"), f"dtype must be auto, fp32 or bf16, got {cfg.dtype!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise DnahnetError(msg)
    if cfg.ratio_targets is not None and any(n <= 1 for n in cfg.ratio_targets):
        raise DnahnetError(f"ratio targets must be > 1, got {cfg.ratio_targets}")
    return cfg


def _plain(value: Any) -> Any:
    """Paths given through the Python API (pathlib) as the strings a TOML file or the command line gives."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list):
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    return value


def _as_list(value: Any) -> list:
    """An option's value(s) as a list: None -> [], a list as is, a scalar -> [scalar]."""
    return [] if value is None else list(value) if isinstance(value, list) else [value]
