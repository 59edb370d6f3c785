"""The training optimiser: the fused CPU AdamW makes the same updates as PyTorch's per-parameter loop, and its
state survives the safetensors round trip that resume uses."""

from __future__ import annotations

import torch

from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.train.checkpoints import optimizer_from_safetensors, optimizer_to_safetensors
from dnahnet_cli.train.config import TrainConfig
from dnahnet_cli.train.trainer import make_adamw


def _model_and_grads(seed: int) -> tuple[DNAHNet, list[list[torch.Tensor]]]:
    torch.manual_seed(seed)
    model = DNAHNet(get_preset("tiny"))
    grads = [[torch.randn_like(p) for p in model.parameters()] for _ in range(6)]
    return model, grads


def _steps(opt: torch.optim.Optimizer, model: DNAHNet, grads: list[list[torch.Tensor]]) -> None:
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = g.clone()
        opt.step()


def test_fused_cpu_adamw_matches_the_looped_update():
    cfg = TrainConfig(lr=2e-3, weight_decay=0.05)
    fused_model, grads = _model_and_grads(0)
    looped_model, _ = _model_and_grads(0)
    groups = lambda m: m.param_groups(weight_decay=cfg.weight_decay, lr_multipliers=[2.0, 1.5, 1.0])
    fused = make_adamw(groups(fused_model), cfg, torch.device("cpu"))
    assert fused.defaults["fused"] is True
    looped = torch.optim.AdamW(groups(looped_model), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                               foreach=False)
    start = [p.detach().clone() for p in fused_model.parameters()]
    _steps(fused, fused_model, grads)
    _steps(looped, looped_model, grads)
    moved = max(float((p.detach() - s).abs().max()) for p, s in zip(fused_model.parameters(), start))
    assert moved > 1e-3  # six steps at lr 2e-3 (x2 at stage 0) move the weights: the comparison is not vacuous
    for (name, a), b in zip(fused_model.named_parameters(), looped_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_fused_adamw_state_round_trips_through_safetensors():
    cfg = TrainConfig(lr=1e-3)
    model, grads = _model_and_grads(1)
    twin, _ = _model_and_grads(1)
    opt = make_adamw(model.param_groups(weight_decay=0.1, lr_multipliers=None), cfg, torch.device("cpu"))
    _steps(opt, model, grads[:3])
    tensors, meta = optimizer_to_safetensors(opt)
    twin.load_state_dict(model.state_dict())
    resumed = make_adamw(twin.param_groups(weight_decay=0.1, lr_multipliers=None), cfg, torch.device("cpu"))
    optimizer_from_safetensors(resumed, tensors, meta)
    _steps(opt, model, grads[3:])
    _steps(resumed, twin, grads[3:])
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)  # resume is exact: bit-identical continuation
