"""The training loop behind `dnahnet train`: AdamW with per-stage LR multipliers, warmup + cosine, gradient
accumulation and clipping, the ratio-loss target schedule, validation in bits per nucleotide, JSONL metrics,
exact resume from checkpoints (checkpoints.py; options in config.py), and DDP under torchrun (distributed.py).

Exact resume works because every input to a step is a function of saved state: parameters and AdamW moments
(safetensors), the step counter (schedule), the global sample counter (data order and RC flags are derived
from (seed, epoch)), and the torch RNG states (uint8 tensors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file

from dnahnet_cli.errors import DnahnetError, DnahnetRuntimeError
from dnahnet_cli.genomics.alphabet import PAD, A, T
from dnahnet_cli.genomics.fileio import atomic_output
from dnahnet_cli.model.precision import choose_dtype
from dnahnet_cli.train.checkpoints import (clean_stale, damaged_checkpoint, list_checkpoints, optimizer_from_safetensors,
                                           prune_checkpoints, restore_rng, resume_file, write_checkpoint)
from dnahnet_cli.train.config import RUNTIME_FIELDS, TrainConfig, make_config
from dnahnet_cli.train.corpus import (BatchPrefetcher, Corpus, ShardedLoader, WindowSampler, discover_fasta,
                                      open_corpus, val_indices)
from dnahnet_cli.train.distributed import Dist, init_distributed, resolve_device


def lr_factor(step: int, total: int, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay that would reach min_ratio at step `total` (one past the last)."""
    warmup = int(round(warmup_frac * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ratio_targets_at(step: int, total: int, final: list[float], start: float, ramp_frac: float) -> list[float]:
    """Per-stage targets ramp linearly from `start` (clamped to >= 1.2, <= final) to `final` over ramp_frac of training,
    so the router is not forced to its full compression before the encoders have learned anything."""
    ramp = ramp_frac * total
    f = 1.0 if ramp <= 0 else min(1.0, step / ramp)
    out = []
    for n in final:
        s0 = min(max(start, 1.2), n)
        out.append(s0 + (n - s0) * f)
    return out


# ----------------------------------------------------------------------------------------------------- metrics/UI

class Reporter:
    """Rank 0 only: JSONL metrics in --out, and a rich progress bar on a terminal or plain lines otherwise."""

    def __init__(self, path: Path, total: int, start: int, enabled: bool, quiet: bool):
        self.enabled, self.quiet, self.path = enabled, quiet, path
        self.progress = None
        if not enabled:
            return
        self.fh = open(path, "a", buffering=1)
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"), console=Console(stderr=True))
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def log(self, msg: str) -> None:
        if not self.enabled or self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(msg)
        else:
            sys.stderr.write(f"dnahnet train: {msg}\n")
            sys.stderr.flush()

    def record(self, rec: dict, line: str | None = None) -> None:
        if not self.enabled:
            return
        self.fh.write(json.dumps(rec) + "\n")
        if line:
            if self.progress is not None:
                self.progress.update(self.task, info=line)
            else:
                self.log(line)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.enabled:
            self.fh.close()


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint we resume from (they will be recomputed)."""
    if not path.exists():
        return
    keep = []
    for ln in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:  # a line cut short by a crash or a full disk: it is recomputed anyway
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= step:
            keep.append(ln)
    with atomic_output(path) as fh:
        fh.write("".join(k + "\n" for k in keep))


def _fmt_list(xs: list[float], fmt: str = "{:.2f}") -> str:
    return "[" + ",".join(fmt.format(x) for x in xs) + "]"


# ----------------------------------------------------------------------------------------------------- training

def make_adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW as one fused kernel over all parameters on a CPU (the per-parameter Python loop cost ~10 ms a step
    for `tiny`'s 190 tensors, ~1 % of a step; fused: ~2 ms), the multi-tensor form on CUDA. Same update rule;
    tests/test_adamw.py compares the fused and looped updates."""
    kind = {"fused": True} if device.type == "cpu" else {"foreach": device.type == "cuda"}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **kind)


class _LossModule(nn.Module):
    """DDP only syncs gradients for work done inside forward(), so route model.loss through it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids, mask, targets, alpha):
        return self.model.loss(ids, mask, ratio_targets=targets, alpha=alpha)


def _count_input(ids: torch.Tensor) -> int:
    """Nucleotides fed to the model (everything but BOS and PAD)."""
    return int((ids[:, 1:] != PAD).sum())


def _count_predicted(ids: torch.Tensor) -> int:
    """Targets the model predicts: A/C/G/T after a position (PAD and N are never targets)."""
    t = ids[:, 1:]
    return int(((t >= A) & (t <= T)).sum())


@torch.no_grad()
def evaluate(model: nn.Module, corpus: Corpus, indices: np.ndarray, batch_size: int, device: torch.device,
             targets: list[float], alpha: float, autocast: Callable, d: Dist) -> dict:
    """Validation NLL in bits per nucleotide over fixed windows (forward strand), plus realised F per stage."""
    was_training = model.training
    model.eval()
    mine = indices[d.rank::d.world]
    n_st = len(targets)
    acc = torch.zeros(2 + 2 * n_st, dtype=torch.float64)
    for i in range(0, len(mine), batch_size):
        ids, mask = corpus.batch(mine[i:i + batch_size])
        ids = ids.to(device)
        mask = mask.to(device) if mask is not None else None
        with autocast():
            lo = model.loss(ids, mask, ratio_targets=targets, alpha=alpha)
        acc[0] += float(lo.nll.detach()) * lo.n_predicted
        acc[1] += lo.n_predicted
        for s in range(n_st):
            acc[2 + s] += lo.F[s]
            acc[2 + n_st + s] += lo.G[s]
    n_batches = torch.tensor([float(math.ceil(len(mine) / batch_size))], dtype=torch.float64)
    acc = d.sum_(acc)
    n_batches = d.sum_(n_batches)
    model.train(was_training)
    nb = max(1.0, float(n_batches))
    return {"val_bpn": float(acc[0] / max(1.0, float(acc[1])) / math.log(2)), "val_nt": int(acc[1]),
            "val_F": [float(acc[2 + s] / nb) for s in range(n_st)],
            "val_G": [float(acc[2 + n_st + s] / nb) for s in range(n_st)]}


def _build_model(cfg: TrainConfig, resume_dir: Path | None, log: Callable[[str], None]):
    from dnahnet_cli.model.lm import DNAHNet, ModelConfig
    from dnahnet_cli.model.presets import get_preset

    if resume_dir is not None:
        from dnahnet_cli.model.checkpoint import load_checkpoint

        model, _ = load_checkpoint(resume_dir, device="cpu")
        return model
    if cfg.init:
        from dnahnet_cli.model.checkpoint import load_checkpoint

        init = Path(cfg.init)
        if not (init / "config.json").is_file():
            raise DnahnetError(f"--init {init}: not a dnahnet checkpoint directory (no config.json)")
        model, _ = load_checkpoint(init, device="cpu")
        if cfg.model:
            raise DnahnetError("[model] overrides cannot be combined with --init (the checkpoint fixes the architecture)")
        model.config.max_seq_len = cfg.seq_len
        log(f"initialised from {init}")
        return model
    if not cfg.preset:
        raise DnahnetError("give --preset NAME or --init CHECKPOINT_DIR (or --resume with an existing run in --out)")
    mc = get_preset(cfg.preset)
    data = mc.to_dict()
    unknown = set(cfg.model) - set(data)
    if unknown:
        raise DnahnetError(f"[model]: unknown model option(s) {', '.join(sorted(unknown))}")
    data.update(cfg.model)
    data["max_seq_len"] = cfg.seq_len
    try:
        mc = ModelConfig.from_dict(data)
        torch.manual_seed(cfg.seed)
        return DNAHNet(mc)
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        # a [model] value of the wrong type or an impossible shape (e.g. headdim not dividing the width)
        raise DnahnetError(f"invalid model configuration ([model] {cfg.model}): {exc}") from None


def train(options: TrainConfig | dict[str, Any]) -> dict:
    """Run (or resume) a training run; returns a summary dict (also written to <out>/summary.json).

    `options` holds only what the user set (CLI over TOML); None values mean "not given". A TrainConfig
    counts as fully given.
    """
    if isinstance(options, TrainConfig):
        options = dataclasses.asdict(options)
    options = {k: v for k, v in options.items() if v is not None and not (k in ("data", "val") and not v)}
    d = init_distributed(str(options.get("device", "auto")))
    try:
        return _train(options, d)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def resolve_config(options: dict[str, Any], ckpt_root: Path) -> tuple[TrainConfig, Path | None, dict, list[str]]:
    """Fresh run: options over defaults. Resume: the checkpoint's configuration, with only runtime options
    (and --steps, to extend a run) taken from the command line; returns the ignored option names."""
    existing = list_checkpoints(ckpt_root)
    resume = bool(options.get("resume", False))
    if existing and not resume:
        raise DnahnetError(f"{ckpt_root.parent} already holds checkpoints (latest {existing[-1].name}); "
                           "pass --resume to continue it or choose another --out")
    finished = [n for n in ("final", "summary.json") if (ckpt_root.parent / n).exists()]
    if finished and not existing:  # a new run would delete its metrics, then replace its model
        raise DnahnetError(f"{ckpt_root.parent} holds a finished run ({', '.join(finished)}) and no checkpoint to "
                           "resume from; choose another --out (or move that run away)")
    if not (resume and existing):
        return make_config(options), None, {}, []
    resume_dir = existing[-1]
    state = resume_file(resume_dir / "trainer.json", lambda p: json.loads(p.read_text()))
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or not isinstance(
            state.get("step"), int):
        raise damaged_checkpoint(resume_dir / "trainer.json", "no 'config' and 'step'")
    unknown = sorted(set(state["config"]) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:  # written by another dnahnet version, or edited by hand
        raise DnahnetError(f"{resume_dir / 'trainer.json'}: unknown option(s) {', '.join(unknown)} in the run's "
                           "configuration: written by another dnahnet version (resume it with that one) or edited")
    merged, ignored = dict(state["config"]), []
    merged["quiet"] = False  # how much this invocation prints is its own choice, not the first run's
    for k, v in options.items():
        if k in RUNTIME_FIELDS or k == "steps":
            merged[k] = v
        elif merged.get(k) != v:
            ignored.append(k)  # e.g. a --preset: the architecture comes from the checkpoint
    planned = state["config"].get("steps", 0)
    if merged.get("steps", planned) < planned:  # a config file's `steps` counts as much as --steps
        raise DnahnetError(f"steps {merged['steps']} (--steps or the config file): this run was set up for {planned} "
                           f"steps and is at step {state['step']} ({resume_dir}); resuming can keep or extend a run's "
                           "length, not shorten it")
    return make_config(merged), resume_dir, state, ignored


@dataclass
class _Run:
    """Everything one training run holds while it steps (built by `_setup`, advanced by `_step`)."""

    cfg: TrainConfig
    d: Dist
    out: Path
    ckpt_root: Path
    device: torch.device
    autocast: Callable
    model: nn.Module
    net: nn.Module
    opt: torch.optim.Optimizer
    loader: ShardedLoader
    train_c: Corpus
    val_c: Corpus | None
    vidx: np.ndarray | None
    targets_final: list[float]
    alpha: float
    resumed: bool = False
    rep: Reporter | None = None
    batches: BatchPrefetcher | None = None  # the next step's batch, prepared while this one computes
    step: int = 0
    consumed: int = 0  # global samples drawn so far (fixes the data order on resume)
    nt_seen: int = 0
    last_val: dict | None = None
    first_bpn: float | None = None


class _Window:
    """Training statistics accumulated between two log lines (summed over ranks when logged)."""

    def __init__(self, n_stages: int):
        self.n_st = n_stages
        self.acc = torch.zeros(4 + 2 * n_stages, dtype=torch.float64)  # nll*n, n, loss, micro count, F.., G..
        self.nt, self.seconds, self.grad_norm, self.steps = 0, 0.0, 0.0, 0

    def add_micro(self, lo) -> None:
        self.acc[0] += float(lo.nll.detach()) * lo.n_predicted
        self.acc[1] += lo.n_predicted
        self.acc[2] += float(lo.loss.detach())
        self.acc[3] += 1
        for s in range(self.n_st):
            self.acc[4 + s] += lo.F[s]
            self.acc[4 + self.n_st + s] += lo.G[s]


def _log_and_device(cfg: TrainConfig, d: Dist) -> tuple[Callable[[str], None], torch.device, Callable]:
    """The stderr logger of rank 0, the device, and the autocast context the precision asks for."""
    log_fn = (lambda m: sys.stderr.write(f"dnahnet train: {m}\n")) if (d.main and not cfg.quiet) else (lambda m: None)
    device = resolve_device(cfg.device, d)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name, reason = choose_dtype(cfg.dtype, device)
    if name not in ("float32", "bfloat16"):
        raise DnahnetError(f"--dtype {cfg.dtype!r}: training runs in auto, fp32 or bf16 (bf16 autocast)")
    use_bf16 = name == "bfloat16"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    autocast.bf16 = use_bf16  # type: ignore[attr-defined]
    autocast.reason = reason  # type: ignore[attr-defined]
    return log_fn, device, autocast


def _open_corpora(cfg: TrainConfig, out: Path, d: Dist, log_fn) -> tuple[Corpus, Corpus | None]:
    """Training and validation windows; local rank 0 builds the caches, the other ranks wait, then open them."""
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out / "cache"

    def _open(paths, what, log):
        return open_corpus(paths, cache_dir, cfg.seq_len, cfg.min_length, cfg.max_n_frac, what=what, log=log)

    corpora: dict[str, Corpus] = {}
    for turn in (0, 1):
        if (d.local_rank == 0) == (turn == 0):
            corpora["train"] = _open(cfg.data, "--data", log_fn)
            if cfg.val:
                corpora["val"] = _open(cfg.val, "--val", log_fn)
        d.barrier()
    train_c = corpora["train"]
    s = train_c.stats
    log_fn(f"data: {s.files} files, {s.records} records, {s.bases:,} bases -> {len(train_c):,} windows of "
           f"<= {cfg.seq_len - 1} nt ({s.short_records} short records, {s.dropped_tails} short tails, "
           f"{s.dropped_n} N-rich windows dropped)")
    return train_c, corpora.get("val")


def _setup(options: dict[str, Any], d: Dist) -> tuple[_Run, Callable[[str], None]]:
    """Configuration, model, data, optimiser and (when resuming) the saved state, in that order."""
    out = Path(options.get("out", TrainConfig.out))
    for path, what in ((options.get("out", TrainConfig.out), "--out"), (options.get("cache_dir"), "--cache-dir")):
        if path is None:
            continue
        if not str(path).strip():  # Path('') is the current folder
            raise DnahnetError(f"{what} is empty ('': an unset shell variable?); give a directory")
        blocker = next((p for p in (Path(path), *Path(path).parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise DnahnetError(f"{what} {path}: {blocker} exists and is not a directory (a directory is needed)")
        writable = next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("."))
        if what == "--out" and not os.access(writable, os.W_OK | os.X_OK):
            raise DnahnetError(f"--out {path}: {writable} is not a writable directory")
    for key, what in (("data", "--data"), ("val", "--val")):
        if options.get(key):
            discover_fasta(options[key], what)  # missing, empty or non-FASTA inputs fail before anything is written
    ckpt_root = out / "checkpoints"
    if d.main:
        clean_stale(ckpt_root)
    d.barrier()
    cfg, resume_dir, state, ignored = resolve_config(options, ckpt_root)
    log_fn, device, autocast = _log_and_device(cfg, d)
    if ignored and d.main:  # a warning, so even under --quiet: the user asked for values this run will not use
        kept = ", ".join(f"{k} {state['config'].get(k)!r} (given {options[k]!r})" for k in ignored)
        sys.stderr.write(f"dnahnet train: warning: resuming keeps the checkpoint's settings: {kept}; only runtime "
                         "options and --steps change on --resume (docs/training.md)\n")
    if resume_dir is not None and cfg.steps != state["config"].get("steps", cfg.steps):
        log_fn(f"resuming: extending the run from {state['config']['steps']} to {cfg.steps} steps (the learning-rate "
               "schedule is recomputed over the new length)")
    if cfg.resume and resume_dir is None:
        log_fn(f"--resume: no checkpoint in {ckpt_root}, starting a new run")
    if not cfg.data:
        raise DnahnetError("--data is required: FASTA/FASTA.gz files or directories")

    model = _build_model(cfg, resume_dir, log_fn).to(device)
    mc = model.config
    targets_final = list(cfg.ratio_targets if cfg.ratio_targets is not None else mc.ratio_targets)
    if len(targets_final) != mc.n_stages:
        raise DnahnetError(f"--ratio-targets needs {mc.n_stages} value(s) for this {mc.n_stages}-stage model, "
                           f"got {targets_final}")
    alpha = cfg.alpha if cfg.alpha is not None else mc.ratio_alpha
    mults = cfg.lr_multipliers
    if mults is not None and len(mults) != mc.n_stages + 1:
        raise DnahnetError(f"lr_multipliers needs {mc.n_stages + 1} values for this model, got {mults}")
    # the saved config says what this model was trained toward: `info`, the FLOP model and `--init` read it there
    mc.ratio_targets, mc.ratio_alpha = [float(t) for t in targets_final], float(alpha)
    if mults is not None:
        mc.lr_multipliers = [float(m) for m in mults]

    if d.main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    d.barrier()
    train_c, val_c = _open_corpora(cfg, out, d, log_fn)
    if resume_dir is not None and state.get("data"):
        before, now = state["data"], train_c.fingerprint()
        changed = [what for what in ("files", "windows", "bases") if what in before and before[what] != now[what]]
        if changed:
            log_fn(f"warning: the training data changed since the checkpoint ({', '.join(changed)}: "
                   f"{before['windows']} -> {now['windows']} windows); the data order will differ from an "
                   "uninterrupted run")

    groups = model.param_groups(weight_decay=cfg.weight_decay, lr_multipliers=mults)
    opt = make_adamw(groups, cfg, device)
    net: nn.Module = _LossModule(model)
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    loader = ShardedLoader(train_c, WindowSampler(len(train_c), cfg.seed, cfg.rc_prob), cfg.batch_size,
                           cfg.grad_accum, d.rank, d.world)
    vidx = val_indices(len(val_c), cfg.val_windows) if val_c is not None else None
    run = _Run(cfg, d, out, ckpt_root, device, autocast, model, net, opt, loader, train_c, val_c, vidx,
               targets_final, alpha)
    if resume_dir is not None:
        # loaded on CPU: load_state_dict moves moments to each parameter's device and keeps 'step' on CPU
        tensors = resume_file(resume_dir / "optimizer.safetensors", lambda p: load_file(str(p)))
        scalars = resume_file(resume_dir / "optimizer.json", lambda p: json.loads(p.read_text()))
        resume_file(resume_dir / "optimizer.json", lambda p: optimizer_from_safetensors(opt, tensors, scalars))
        rng = resume_file(resume_dir / "rng.safetensors", lambda p: load_file(str(p)))
        resume_file(resume_dir / "rng.safetensors", lambda p: restore_rng(rng))
        run.step, run.consumed, run.nt_seen = state["step"], state["samples_consumed"], state.get("nucleotides", 0)
        run.last_val, run.first_bpn = state.get("val"), state.get("first_val_bpn")
        run.resumed = True
        log_fn(f"resumed from {resume_dir} at step {run.step}")
    else:
        torch.manual_seed(cfg.seed + 7919 * d.rank)
    n_params = sum(p.numel() for p in model.parameters())
    log_fn(f"model {mc.name}: {n_params:,} parameters, {mc.n_stages} stage(s), ratio targets {targets_final}, "
           f"alpha {alpha}; {d.world} process(es) on {device}, {'bf16 autocast' if autocast.bf16 else 'fp32'} ({autocast.reason}); "
           f"global batch {loader.global_batch} x {cfg.seq_len} tokens")

    metrics_path = out / "metrics.jsonl"
    if d.main:
        if resume_dir is not None:
            truncate_metrics(metrics_path, run.step)
        elif metrics_path.exists():
            metrics_path.unlink()
    return run, log_fn


def _evaluate(run: _Run, at: int) -> dict | None:
    """Validation at step `at` (None without --val), recorded in metrics.jsonl and logged."""
    if run.val_c is None:
        return None
    cfg = run.cfg
    tg = ratio_targets_at(at, cfg.steps, run.targets_final, cfg.ratio_start, cfg.ratio_ramp_frac)
    ev = evaluate(run.model, run.val_c, run.vidx, cfg.batch_size, run.device, tg, run.alpha, run.autocast, run.d)
    line = f"step {at}: val {ev['val_bpn']:.4f} bits/nt" + (
        f", val ratio {_fmt_list([1 / max(f, 1e-9) for f in ev['val_F']])}" if ev["val_F"] else "")
    run.rep.record({"step": at, "type": "val", **ev})
    run.rep.log(line)
    return ev


def _step(run: _Run, window: _Window) -> tuple[float, list[float]]:
    """One optimiser step over the global batch (all micro-batches of every rank); returns (lr, targets)."""
    cfg, d, net = run.cfg, run.d, run.net
    t0 = time.perf_counter()
    lf = lr_factor(run.step, cfg.steps, cfg.warmup_frac, cfg.min_lr_ratio)
    for g in run.opt.param_groups:
        g["lr"] = cfg.lr * lf * g["lr_multiplier"]
    targets = ratio_targets_at(run.step, cfg.steps, run.targets_final, cfg.ratio_start, cfg.ratio_ramp_frac)
    micro = run.batches.get(run.consumed)
    local = [sum(_count_predicted(ids) for ids, _ in micro), sum(_count_input(ids) for ids, _ in micro)]
    n_global, nt_global = d.sum_(torch.tensor(local, dtype=torch.float64)).tolist()
    for m, (ids, mask) in enumerate(micro):
        ids = ids.to(run.device, non_blocking=True)
        mask = mask.to(run.device, non_blocking=True) if mask is not None else None
        sync = contextlib.nullcontext() if (d.world == 1 or m == len(micro) - 1) else net.no_sync()
        with sync:
            with run.autocast():
                lo = net(ids, mask, targets, run.alpha)
            # Token-weighted NLL over the global batch; the ratio terms are averaged per micro-batch,
            # so accum micro-batches in one process equal the same micro-batches spread over ranks.
            weight = lo.n_predicted * d.world / max(n_global, 1.0)
            loss = lo.nll * weight + (lo.loss - lo.nll) / cfg.grad_accum
            loss.backward()
        if not math.isfinite(float(lo.loss.detach())):
            raise DnahnetRuntimeError(f"non-finite loss at step {run.step + 1}; try a lower --lr")
        window.add_micro(lo)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    gn = torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm)
    window.grad_norm, window.steps = window.grad_norm + float(gn), window.steps + 1
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    window.seconds += time.perf_counter() - t0
    run.step += 1
    run.consumed += run.loader.global_batch
    window.nt += int(nt_global)
    run.nt_seen += int(nt_global)
    return cfg.lr * lf, targets


def _log_window(run: _Run, window: _Window, lr: float, targets: list[float]) -> None:
    """One train record (means over the window, summed over ranks) to metrics.jsonl and the progress line."""
    d, n_st = run.d, window.n_st
    tot = d.sum_(torch.cat([window.acc, torch.tensor([window.seconds], dtype=torch.float64)]))
    mc_ = max(1.0, float(tot[3]))
    Fs = [float(tot[4 + s] / mc_) for s in range(n_st)]
    Gs = [float(tot[4 + n_st + s] / mc_) for s in range(n_st)]
    wall = float(tot[-1]) / d.world  # per-process time; the ranks run concurrently
    rec = {"step": run.step, "type": "train", "loss": float(tot[2] / mc_),
           "train_bpn": float(tot[0] / max(1.0, float(tot[1])) / math.log(2)),
           "lr": lr, "grad_norm": window.grad_norm / max(1, window.steps), "ratio_target": targets,
           "F": Fs, "G": Gs, "realised_ratio": [1 / max(f, 1e-9) for f in Fs],
           "nt_per_s": window.nt / max(wall, 1e-9), "samples": run.consumed, "nucleotides": run.nt_seen}
    line = (f"step {run.step}/{run.cfg.steps} loss {rec['loss']:.4f} train {rec['train_bpn']:.4f} bits/nt "
            f"lr {rec['lr']:.2e} {rec['nt_per_s']:,.0f} nt/s")
    if n_st:
        line += f" ratio {_fmt_list(rec['realised_ratio'])} (target {_fmt_list(targets)}) G {_fmt_list(Gs)}"
    run.rep.record(rec, line)


def _save(run: _Run) -> None:
    """A resumable checkpoint of the current step (rank 0 writes, every rank waits)."""
    cfg = run.cfg
    trainer_state = {"step": run.step, "samples_consumed": run.consumed, "nucleotides": run.nt_seen,
                     "world_size": run.d.world, "config": dataclasses.asdict(cfg), "data": run.train_c.fingerprint(),
                     "val_bpn": run.last_val["val_bpn"] if run.last_val else None, "val": run.last_val,
                     "first_val_bpn": run.first_bpn}
    if run.d.main:
        meta = {"step": run.step, "train_config": dataclasses.asdict(cfg), "precision": _precision(run),
                "val_bpn": trainer_state["val_bpn"], "nucleotides_seen": run.nt_seen}
        path = write_checkpoint(run.ckpt_root, run.step, run.model, run.opt, trainer_state, meta)
        prune_checkpoints(run.ckpt_root, cfg.keep_last)
        run.rep.log(f"checkpoint {path}")
    run.d.barrier()


def _precision(run: _Run) -> str:
    """What this process trained in and why (e.g. --dtype auto on a CPU without bf16): a run resumed on another
    machine can change it, so each checkpoint records its own."""
    return f"{'bfloat16 autocast' if run.autocast.bf16 else 'float32'}; {run.autocast.reason}"


def _finish(run: _Run, log_fn) -> dict:
    """The final model (out/final) and summary.json, both written atomically by rank 0."""
    cfg, out = run.cfg, run.out
    last_val = run.last_val
    checkpoints = list_checkpoints(run.ckpt_root)
    summary = {"steps": run.step, "samples": run.consumed, "parameters": sum(p.numel() for p in run.model.parameters()),
               "model": run.model.config.name, "first_val_bpn": run.first_bpn,
               "val_bpn": last_val["val_bpn"] if last_val else None,
               "val_realised_ratio": [1 / max(f, 1e-9) for f in last_val["val_F"]] if last_val else None,
               "checkpoint": str(checkpoints[-1]) if checkpoints else None}
    if run.d.main:
        from dnahnet_cli.model.checkpoint import save_checkpoint

        final = out / "final"  # save_checkpoint swaps it in whole (atomic_directory): never half a model
        save_checkpoint(final, run.model, {"step": run.step, "train_config": dataclasses.asdict(cfg),
                                           "precision": _precision(run), "val_bpn": summary["val_bpn"]})
        summary["final"] = str(final)
        with atomic_output(out / "summary.json") as fh:
            json.dump(summary, fh, indent=1)
        log_fn(f"done: {run.step} steps; final model in {final}")
    return summary


def _new_dirs(options: dict[str, Any]) -> list[Path]:
    """The run's directories (and their parents) that do not exist yet, deepest first."""
    out = Path(options.get("out", TrainConfig.out))
    wanted = [out / "checkpoints", Path(options["cache_dir"]) if options.get("cache_dir") else out / "cache"]
    missing = {p for w in wanted for p in (w, *w.parents) if str(p).strip() and not p.exists()}
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(dirs: list[Path]) -> None:
    for p in dirs:  # deepest first; a folder that got files (a token cache) stays
        try:
            p.rmdir()
        except OSError:
            pass


def _train(options: dict[str, Any], d: Dist) -> dict:
    """Set up, validate at the start, then step, log, validate and checkpoint until cfg.steps."""
    new_dirs = _new_dirs(options) if d.main else []
    try:
        run, log_fn = _setup(options, d)
    except BaseException:  # a run that never started leaves no empty run, checkpoint or cache folders behind
        _remove_empty(new_dirs)
        raise
    cfg = run.cfg
    run.rep = Reporter(run.out / "metrics.jsonl", cfg.steps, run.step, d.main, cfg.quiet)
    if not run.resumed and run.val_c is not None:
        run.last_val = _evaluate(run, 0)
        run.first_bpn = run.last_val["val_bpn"]
    window = _Window(run.model.config.n_stages)
    kill_at = os.environ.get("DNAHNET_KILL_AT_STEP")
    term_at = os.environ.get("DNAHNET_TERM_AT_STEP")
    stop = _StopOnSigterm(d.world == 1)
    run.batches = BatchPrefetcher(run.loader)
    run.net.train()
    try:
        while run.step < cfg.steps:
            lr, targets = _step(run, window)
            run.rep.advance(run.step)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                _log_window(run, window, lr, targets)
                window = _Window(window.n_st)
            if run.val_c is not None and (run.step % cfg.eval_every == 0 or run.step == cfg.steps):
                run.last_val = _evaluate(run, run.step)
            saved = run.step % cfg.ckpt_every == 0 or run.step == cfg.steps
            if saved:
                _save(run)
            if kill_at is not None and int(kill_at) == run.step:  # test hook: simulate a crash (no cleanup)
                os.kill(os.getpid(), signal.SIGKILL)
            if term_at is not None and int(term_at) == run.step:  # test hook: a scheduler's notice
                os.kill(os.getpid(), signal.SIGTERM)
            if stop.requested and run.step < cfg.steps:
                if not saved:
                    _save(run)
                log_fn(f"stopped by SIGTERM after step {run.step}: checkpoint written; continue with --resume")
                raise SystemExit(143)
    finally:
        run.rep.close()
        run.batches.close()
        run.batches = None
        stop.restore()
    return _finish(run, log_fn)


class _StopOnSigterm:
    """SIGTERM (a batch scheduler's notice before it kills a job, e.g. SLURM at its time limit) lets the current
    step finish, writes a checkpoint and exits 143, so `--resume` loses nothing. Only in single-process runs: the
    ranks of a distributed run could stop at different steps, so they keep the default (stop at once)."""

    def __init__(self, enabled: bool):
        self.requested = False
        self._previous = None
        if enabled:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._request)
            except ValueError:  # not the main thread (train() called from a library's worker thread)
                pass

    def _request(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
