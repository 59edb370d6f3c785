"""Training checkpoints without pickle: model weights (safetensors + config.json), the AdamW state split into
tensors (safetensors) and plain JSON, the RNG states and the trainer's counters, written into a hidden staging
directory that becomes step-N only when complete; listing, pruning and cleaning up after a crash; and one-line
errors for a damaged checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import save_file

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import share_like_outputs

CKPT_PREFIX = "step-"


def damaged_checkpoint(path: Path, problem: str) -> DnahnetError:
    return DnahnetError(f"{path}: damaged checkpoint ({problem}); move {path.parent.name} out of "
                        f"{path.parent.parent} to resume from the checkpoint before it")


def resume_file(path: Path, read: Callable[[Path], Any]) -> Any:
    """read(path) for one file of the checkpoint a run resumes from: a missing or damaged file is one line
    naming it and what to do, not a traceback."""
    try:
        return read(path)
    except FileNotFoundError:
        raise damaged_checkpoint(path, "file missing") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, SafetensorError) as exc:
        raise damaged_checkpoint(path, f"{type(exc).__name__}: {exc}"[:200]) from None


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a directory only gets its step-N name once fully written)."""
    if not ckpt_root.is_dir():
        return []
    dirs = [p for p in ckpt_root.iterdir() if p.is_dir() and re.fullmatch(CKPT_PREFIX + r"[0-9]+", p.name)
            and (p / "trainer.json").exists()]  # a user's copy, step-N.bak, is not one
    return sorted(dirs, key=lambda p: int(p.name[len(CKPT_PREFIX):]))


def optimizer_to_safetensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and plain JSON: nothing is pickled."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_safetensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_checkpoint(ckpt_root: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer,
                     trainer_state: dict, metadata: dict) -> Path:
    """Model (via save_checkpoint) + optimizer + trainer state + RNG into a hidden staging directory, which
    is renamed to step-N only when complete: a crash at any point leaves either nothing or a whole checkpoint."""
    from dnahnet_cli.model.checkpoint import save_checkpoint

    final = ckpt_root / f"{CKPT_PREFIX}{step:07d}"
    staging = ckpt_root / f".tmp-{final.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    save_checkpoint(staging, model, metadata)
    tensors, meta = optimizer_to_safetensors(opt)
    save_file(tensors, str(staging / "optimizer.safetensors"))
    (staging / "optimizer.json").write_text(json.dumps(meta))
    save_file(rng_tensors(), str(staging / "rng.safetensors"))
    (staging / "trainer.json").write_text(json.dumps(trainer_state, indent=1))
    share_like_outputs(staging)
    for f in staging.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(staging)
    if os.environ.get("DNAHNET_KILL_IN_CHECKPOINT") == str(step):  # test hook: die before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    if final.exists():  # re-written after a resume from an older checkpoint
        trash = ckpt_root / f".del-{final.name}-{os.getpid()}"
        final.rename(trash)
        shutil.rmtree(trash)
    staging.rename(final)
    _fsync_dir(ckpt_root)
    return final


def prune_checkpoints(ckpt_root: Path, keep: int) -> None:
    for old in list_checkpoints(ckpt_root)[:-keep]:
        trash = ckpt_root / f".del-{old.name}"
        old.rename(trash)  # never leave a half-deleted step-N that looks like a checkpoint
        shutil.rmtree(trash, ignore_errors=True)


def clean_stale(ckpt_root: Path) -> None:
    """Remove what a crashed run left half-written: staging or half-deleted checkpoint directories, and the
    staging directory of the final model next to checkpoints/."""
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith("."):
                shutil.rmtree(p, ignore_errors=True)
    if ckpt_root.parent.is_dir():  # atomic_directory's staging (.final.XXXX) and swap (.final.old) names
        for pattern in (".final.*", ".tmp-final-*", "..tmp-final-*"):  # the last two: earlier versions' names
            for p in ckpt_root.parent.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)
