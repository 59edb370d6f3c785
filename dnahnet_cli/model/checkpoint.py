"""Checkpoints: a directory with `model.safetensors` (weights) and `config.json` (architecture, metadata).

Loading never unpickles anything: safetensors holds raw tensors only and JSON holds the rest, so a
checkpoint from an untrusted source cannot execute code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dnahnet_cli import __version__
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import share_like_outputs
from dnahnet_cli.model.lm import DNAHNet, ModelConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "dnahnet-checkpoint/1"
# every file a checkpoint directory holds: the model, its reference values (check.json), a training state
CHECKPOINT_FILES = {CONFIG, WEIGHTS, "check.json", "optimizer.safetensors", "optimizer.json", "rng.safetensors",
                    "trainer.json"}


def config_sha256(config: ModelConfig) -> str:
    """sha256 of the architecture as loaded (canonical JSON): the weights' hash alone does not change when
    config.json is edited, e.g. an attention window, although every score does."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike):
    """Build a directory under a temporary name and swap it into place on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        share_like_outputs(tmp)
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            target.rename(old)
            tmp.rename(target)
            _remove(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    """Delete a replaced entry: a symlink itself (never what it points to), else the directory tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(out_dir: str | os.PathLike, model: DNAHNet, metadata: dict[str, Any] | None = None,
                    extra_files: dict[str, Any] | None = None) -> Path:
    """Write weights + config atomically. `extra_files` maps file names to dicts of tensors (safetensors)
    or JSON-serialisable objects, e.g. optimiser state for resumable training."""
    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    info = {
        "format": FORMAT,
        "dnahnet_version": __version__,
        "config": model.config.to_dict(),
        "metadata": metadata or {},
    }
    with atomic_directory(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(info, indent=2) + "\n")
        for name, obj in (extra_files or {}).items():
            if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
                save_file({k: v.contiguous().cpu() for k, v in obj.items()}, str(tmp / name))
            else:
                (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
    return out_dir


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """Whether `path` holds a dnahnet checkpoint's config.json (what `init --force` may replace)."""
    try:
        return json.loads((Path(path) / CONFIG).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_checkpoint_info(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """Parse and check config.json; DnahnetError names the directory and the problem."""
    ckpt_dir = Path(ckpt_dir)
    try:
        if ckpt_dir.is_file():
            raise DnahnetError(f"{ckpt_dir}: a file; --model takes the model's directory (the folder holding "
                               f"{CONFIG} and {WEIGHTS})")
        if not ckpt_dir.is_dir():
            raise DnahnetError(f"model directory not found: {ckpt_dir}")
        cfg_path, weights = ckpt_dir / CONFIG, ckpt_dir / WEIGHTS
        if not cfg_path.is_file() or not weights.is_file():
            final = ckpt_dir / "final"
            hint = f"; a train run's model is in {final}" if (final / CONFIG).is_file() else ""
            raise DnahnetError(f"{ckpt_dir}: not a dnahnet checkpoint (needs {CONFIG} and {WEIGHTS}){hint}")
        info = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DnahnetError(f"{cfg_path}: invalid JSON ({str(exc) or type(exc).__name__})") from None
    except OSError as exc:  # unreadable: permissions, a damaged disk
        raise DnahnetError(f"{exc.filename or ckpt_dir}: cannot read the model ({exc.strerror or exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "config" not in info:
        raise DnahnetError(f"{cfg_path}: not a dnahnet checkpoint config (format {FORMAT!r} expected)")
    if not isinstance(info.get("metadata", {}), dict):
        raise DnahnetError(f"{cfg_path}: 'metadata' must be a JSON object")
    try:
        info["model_config"] = ModelConfig.from_dict(info["config"])
        info["model_config"].validate()
        with torch.device("meta"):  # names and shapes only: no memory, no initialisation work
            expected = {k: tuple(v.shape) for k, v in DNAHNet(info["model_config"]).state_dict().items()}
    except (TypeError, ValueError, KeyError, IndexError, AssertionError, ArithmeticError, RuntimeError,
            RecursionError) as exc:  # what building can still raise
        why = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise DnahnetError(f"{cfg_path}: invalid model config ({why})") from None
    header = _safetensors_header(weights)
    info["weights"] = {"tensors": sum(k != "__metadata__" for k in header), "bytes": weights.stat().st_size}
    stored = {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__"}
    mismatch = _state_mismatch(expected, stored)
    if mismatch:
        raise DnahnetError(f"{weights}: weights do not match config.json ({mismatch})")
    return info


def _state_mismatch(expected: dict[str, tuple], stored: dict[str, tuple]) -> str:
    """What differs between the tensors a config builds and those a file holds ('' when nothing does)."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    bad_shape = sorted(k for k in set(stored) & set(expected) if tuple(stored[k]) != tuple(expected[k]))
    return "; ".join(f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape))
                     if keys)


def _safetensors_header(path: Path) -> dict:
    """The parsed header of a safetensors file, checked against the file's size without reading the tensors:
    a truncated or corrupt weights file is caught by `info` too, not only at load time."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        spans = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = (int(x) for x in entry["data_offsets"])
            width = FLOAT_BYTES.get(entry["dtype"])
            if width is None:
                raise ValueError(f"tensor {name} has dtype {entry['dtype']}; dnahnet weights are floating point "
                                 f"({', '.join(FLOAT_BYTES)})")
            if end - begin != width * math.prod(int(d) for d in entry["shape"]):
                raise ValueError(f"tensor {name}: {end - begin} bytes for shape {entry['shape']} of {entry['dtype']}")
            spans.append((begin, end))
        spans.sort()
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])) or (spans and spans[0][0] != 0):
            raise ValueError("tensor byte ranges overlap or leave a gap at the start")
    except OSError as exc:
        raise DnahnetError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError, RecursionError) as exc:
        raise DnahnetError(f"{path}: not a valid safetensors file ({exc})") from None
    expected = 8 + n + max((end for _, end in spans), default=0)
    if size != expected:
        raise DnahnetError(f"{path}: truncated or corrupt ({size:,} bytes, the header describes {expected:,})")
    return header


# the tensor types a dnahnet checkpoint may hold (as safetensors names them), with their widths in bytes
FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def load_checkpoint(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DNAHNet, dict]:
    """Rebuild the model from config.json and load the safetensors weights (strict: every tensor must match)."""
    ckpt_dir = Path(ckpt_dir)
    info = read_checkpoint_info(ckpt_dir)
    weights = ckpt_dir / WEIGHTS
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DnahnetError(f"{weights}: cannot read weights ({exc})") from None
    broken = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if broken:  # a NaN weight makes every likelihood NaN, which scoring would read as N bases: say so now
        raise DnahnetError(f"{weights}: NaN or infinite values in {len(broken)} tensor(s) ({', '.join(broken[:3])}"
                           f"{' …' if len(broken) > 3 else ''}); the model is damaged")
    model = DNAHNet(info["model_config"])
    model.load_state_dict(state, strict=True)  # names, shapes and float types were checked against the header
    metadata = dict(info.get("metadata", {}))
    metadata.setdefault("dnahnet_version", info.get("dnahnet_version"))
    metadata["sha256"] = sha256_file(weights)
    metadata["config_sha256"] = config_sha256(info["model_config"])
    metadata["path"] = str(ckpt_dir)
    return model.to(device).eval(), metadata
