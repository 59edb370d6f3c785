"""dnaHNet language model: nucleotide embedding -> H-Net stages -> next-nucleotide head.

The head predicts the next nucleotide among A, C, G, T only (N and ambiguity codes are read as context
but never predicted), so the loss and every likelihood are over four letters: bits per nucleotide <= 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnahnet_cli.genomics.alphabet import target_classes
from dnahnet_cli.model.config import ModelConfig  # noqa: F401  (re-exported: callers import it from here)
from dnahnet_cli.model.hnet import HNetStage, StageRouting
from dnahnet_cli.model.layers import layout_height
from dnahnet_cli.model.precision import full_precision


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, L, 4): next-nucleotide logits after each position
    stages: list[StageRouting]  # outer first


@dataclass
class LossOutput:
    loss: torch.Tensor
    nll: torch.Tensor  # mean nats per predicted nucleotide
    n_predicted: int
    ratio_loss: list[torch.Tensor]
    F: list[float]  # fraction of positions selected per stage
    G: list[float]  # mean boundary probability per stage


def ratio_loss(routing: StageRouting, target: float) -> tuple[torch.Tensor, float, float]:
    """H-Net load-balancing loss N/(N-1) * ((N-1) F G + (1-F)(1-G)), with means over valid positions only
    (the official padded mode counts padding; masking reproduces its packed-mode semantics).
    Equals 1 at F = G = 1/N; its gradient lowers G while F > 1/N and raises it while F < 1/N."""
    valid = routing.mask
    n_valid = valid.sum().clamp(min=1)
    F_ = (routing.boundary_mask & valid).sum().float() / n_valid
    G_ = (routing.boundary_prob * valid).sum() / n_valid
    N = target
    loss = N / (N - 1) * ((N - 1) * F_ * G_ + (1 - F_) * (1 - G_))
    return loss, float(F_), float(G_.detach())


class DNAHNet(nn.Module):
    """The whole model; `forward(ids, mask, state)` with state=None (parallel) or a dict (continuation)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        d0 = config.d_model[0]
        self.embeddings = nn.Embedding(config.vocab_size, d0)
        self.backbone = HNetStage(config, 0, config.arch_layout, d0)
        self.lm_head = nn.Linear(d0, 4, bias=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Official H-Net init: embeddings N(0,1), linears N(0,std), out_proj/fc2 N(0, std/sqrt(n_res))
        where n_res accumulates stack heights from the outside in; routers, residual_proj and Mamba's
        own dt/A/D/conv inits are left alone."""
        nn.init.normal_(self.embeddings.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=std)
        n_res, stage, layout = 0, self.backbone, self.config.arch_layout
        while True:
            if stage.innermost:
                n_res += layout_height(layout[0])
                stacks = [stage.main]
            else:
                n_res += layout_height(layout[0]) + layout_height(layout[2])
                stacks = [stage.encoder, stage.decoder]
            for stack in stacks:
                for name, module in stack.named_modules():
                    if isinstance(module, nn.Linear) and not getattr(module.weight, "_no_reinit", False):
                        scale = 1 / math.sqrt(n_res) if ("out_proj" in name or "fc2" in name) else 1.0
                        nn.init.normal_(module.weight, std=std * scale)
                        if module.bias is not None:
                            nn.init.zeros_(module.bias)
            if stage.innermost:
                break
            stage, layout = stage.main, layout[1]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None, state: dict | None = None) -> ModelOutput:
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        x = self.embeddings(ids)
        y, stages = self.backbone(x, mask, state)
        with full_precision(y):  # the head is tiny (d x 4) and its logits are the scores: keep it fp32
            logits = self.lm_head(y.float())
        return ModelOutput(logits, stages)

    def loss(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
             ratio_targets: Sequence[float] | None = None, alpha: float | None = None) -> LossOutput:
        """Next-nucleotide NLL (positions whose target is A/C/G/T and valid) + alpha * sum of ratio losses."""
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        targets = list(self.config.ratio_targets if ratio_targets is None else ratio_targets)
        alpha = self.config.ratio_alpha if alpha is None else alpha
        if len(targets) != self.config.n_stages:
            raise ValueError(f"need {self.config.n_stages} ratio targets, got {len(targets)}")
        out = self(ids, mask)
        classes = target_classes(ids[:, 1:])
        valid = mask[:, 1:] & (classes >= 0)
        logits = out.logits[:, :-1][valid]
        n_pred = int(valid.sum())
        nll = F.cross_entropy(logits, classes[valid]) if n_pred else logits.sum() * 0.0
        ratio_terms, Fs, Gs = [], [], []
        for routing, target in zip(out.stages, targets):
            term, f_, g_ = ratio_loss(routing, target)
            ratio_terms.append(term)
            Fs.append(f_)
            Gs.append(g_)
        total = nll + alpha * sum(ratio_terms) if ratio_terms else nll
        return LossOutput(total, nll, n_pred, ratio_terms, Fs, Gs)

    def stage_of_parameters(self) -> dict[str, int]:
        """Stage index that owns each parameter: embeddings/head -> 0, stage s's own modules -> s."""
        return {name: _stage_and_component(name)[0] for name, _ in self.named_parameters()}

    def param_groups(self, weight_decay: float = 0.05, lr_multipliers: Sequence[float] | None = None) -> list[dict]:
        """AdamW groups by (stage learning-rate multiplier, decay or not). 1-D parameters (norms, biases,
        A_log, D, dt_bias, pad vectors) get no weight decay; the loop sets lr = base * schedule * lr_multiplier."""
        mults = list(lr_multipliers or self.config.lr_multipliers or [1.0] * (self.config.n_stages + 1))
        groups: dict[tuple[float, bool], dict] = {}
        owners = self.stage_of_parameters()
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            mult = mults[min(owners[name], len(mults) - 1)]
            decay = param.ndim >= 2
            group = groups.setdefault((mult, decay), {"params": [], "names": [], "lr_multiplier": mult,
                                                      "weight_decay": weight_decay if decay else 0.0})
            group["params"].append(param)
            group["names"].append(name)
        return list(groups.values())

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component: embedding+head, and per stage encoder/decoder/routing/main."""
        counts: dict[str, int] = {}
        for name, param in self.named_parameters():
            stage, component = _stage_and_component(name)
            key = component if component == "embedding+head" else f"stage{stage}.{component}"
            counts[key] = counts.get(key, 0) + param.numel()
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts


def _stage_and_component(name: str) -> tuple[int, str]:
    """'backbone.main.encoder.layers.0...' -> (1, 'encoder'). Each nested HNetStage is reached through
    an attribute called 'main'; the innermost stage's Isotropic stack is also called 'main'."""
    if not name.startswith("backbone."):
        return 0, "embedding+head"
    parts = name.split(".")[1:]
    stage = 0
    while parts[0] == "main":
        parts = parts[1:]
        if parts[0] in ("layers", "rmsnorm"):
            return stage, "main"
        stage += 1
    component = parts[0]
    if component in ("router", "residual_proj"):
        component = "routing"
    elif component == "pad_dimension":
        component = "pad"
    return stage, component
