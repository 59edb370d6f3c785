"""Worker for bench/cpu_fast_path.py: imports dnahnet from the checkout given as argv[1] (any layout since
18b10ff), then answers timing jobs read as JSON lines on stdin with one JSON line each on stdout. Like the CLI,
it applies the checkout's host-memory policy when the checkout has one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
try:  # the host-memory policy the CLI applies at start-up (since f7d4461); older checkouts run plain malloc
    from dnahnet_cli.model.allocator import keep_freed_memory

    keep_freed_memory()
except ImportError:
    pass
try:  # the OpenMP wait policy the CLI applies at start-up (model/openmp.py); older checkouts have none
    from dnahnet_cli.model.openmp import short_spin

    short_spin()
except ImportError:
    pass
import torch  # noqa: E402

try:  # layout of 9667964 and later
    from dnahnet_cli.model.hnet import RoutingModule
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset
except ImportError:  # the flat layout before it
    from dnahnet_cli.hnet import RoutingModule  # type: ignore[no-redef]
    from dnahnet_cli.model import DNAHNet  # type: ignore[no-redef]
    from dnahnet_cli.presets import get_preset  # type: ignore[no-redef]


def fixed_routers(model: torch.nn.Module) -> None:
    """Cut every R-th position (R = the stage's target ratio) after running the real router, as
    bench/common.use_fixed_ratio_routers does: an untrained router would misstate the hierarchy's cost."""
    routers = [m for m in model.modules() if isinstance(m, RoutingModule)]
    for router, ratio in zip(routers, model.config.ratio_targets):
        def forward(h, mask, state=None, _r=int(round(ratio)), _real=router.forward):
            _real(h, mask, state)
            p = torch.where(torch.arange(h.shape[1]) % _r == 0, 0.9, 0.1).float().expand(h.shape[0], -1)
            return p, (p > 0.5) & mask
        router.forward = forward


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer `dnahnet train` of this checkout builds on a CPU (make_adamw: fused since 2026-12-06);
    older checkouts' trainers looped over the parameters (foreach only on CUDA), as plain AdamW does on a CPU."""
    try:
        # from trainer, not train.config: this worker also runs older checkouts (--before), which have no config.py
        from dnahnet_cli.train.trainer import TrainConfig, make_adamw
    except ImportError:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    return make_adamw(model.param_groups(), TrainConfig(lr=1e-4), torch.device("cpu"))


def autocast_for(dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


_models: dict = {}


def config_for(job: dict):
    """The job's model: its `config` (a ModelConfig dict, the same for every checkout: like-for-like) when
    given, else this checkout's own preset of that name (which may be an older layout)."""
    if "config" not in job:
        return get_preset(job["preset"])
    base = get_preset("tiny")  # only for the ModelConfig class: every checkout has `tiny`, not every one `cpu`
    known = set(type(base).__dataclass_fields__)
    extra = {k: v for k, v in job["config"].items() if k not in known}
    if any(v not in (None, {}, [], "") for v in extra.values()):
        raise ValueError(f"this checkout's ModelConfig has no {', '.join(sorted(extra))}")
    return type(base)(**{k: v for k, v in job["config"].items() if k in known})


def model_for(job: dict, train: bool):
    key = (job["preset"], json.dumps(job.get("config"), sort_keys=True), train)
    if key not in _models:
        torch.manual_seed(0)
        model = DNAHNet(config_for(job))
        fixed_routers(model)
        model.train(train)
        opt = adamw(model) if train else None
        _models[key] = (model, opt)
    return _models[key]


def run(job: dict) -> float:
    torch.set_num_threads(job["threads"])
    model, opt = model_for(job, job["kind"] == "train")
    ids = torch.randint(2, 6, (job["batch"], job["length"]), generator=torch.Generator().manual_seed(1))
    t = time.perf_counter()
    if job["kind"] == "score":
        with torch.inference_mode(), autocast_for(job["dtype"]):
            model(ids)
    else:
        with autocast_for(job["dtype"]):
            out = model.loss(ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


for line in sys.stdin:
    job = json.loads(line)
    try:
        model, _ = model_for(job, job["kind"] == "train")
    except Exception as exc:  # e.g. a preset this checkout does not have: the case is skipped, not the run
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        continue
    config = dataclasses.asdict(model.config)  # what this checkout built: the parent counts FLOPs from it
    print(json.dumps({"seconds": run(job), "config": config, "threads": torch.get_num_threads()}), flush=True)
