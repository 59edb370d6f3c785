"""dnaHNet model core: incremental == full forward, causality, padding, ratio loss, init, parameters."""

from __future__ import annotations

import math

import pytest
import torch

from dnahnet_cli.genomics.alphabet import BOS
from dnahnet_cli.model import kernels
from dnahnet_cli.model.hnet import HNetStage, RoutingModule
from dnahnet_cli.model.cpu_linear import Linear
from dnahnet_cli.model.layers import CausalSelfAttention, Mamba2, layout_height
from dnahnet_cli.model.lm import DNAHNet, ratio_loss
from dnahnet_cli.model.hnet import StageRouting
from dnahnet_cli.model.presets import PRESETS, get_preset

from conftest import kernel_mode

ALL_TINY = ["tiny", "tiny-1stage", "tiny-tpp", "tiny-mamba2"]


def make_model(preset: str, perturb: float = 0.5, seed: int = 0) -> DNAHNet:
    """A tiny model whose routers are perturbed away from the identity so boundaries vary by row."""
    torch.manual_seed(seed)
    model = DNAHNet(get_preset(preset)).eval()
    for module in model.modules():
        if isinstance(module, RoutingModule):
            module.q_proj.weight.data += perturb * torch.randn_like(module.q_proj.weight)
        if isinstance(module, HNetStage):  # off their zero init, so a leak through the skip path or the pad shows
            if hasattr(module, "residual_proj"):
                module.residual_proj.weight.data.normal_(0, 0.05)
            if module.pad_dimension is not None:
                module.pad_dimension.data.normal_(0, 0.1)
    return model


def random_ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 6, (batch, length), generator=g)
    ids[:, 0] = BOS
    return ids


def min_margin(out) -> float:
    return min(float((r.boundary_prob[r.mask][1:] - 0.5).abs().min()) for r in out.stages) if out.stages else 1.0


# -- layers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "torch"])  # under no_grad "auto" takes the compiled kernels for both
def test_mamba2_prefill_then_steps_equals_forward(mode):
    layer = Mamba2(32, d_state=16, headdim=16, chunk_size=16).eval()
    x = torch.randn(2, 50, 32)
    mask = torch.ones(2, 50, dtype=torch.bool)
    with torch.no_grad(), kernel_mode(mode):
        full = layer(x, mask)
        state: dict = {}
        parts = [layer(x[:, :20], mask[:, :20], state)]
        parts += [layer(x[:, t: t + 1], mask[:, t: t + 1], state) for t in range(20, 50)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


@pytest.mark.parametrize("window", [-1, 7])
def test_attention_prefill_then_steps_equals_forward(window):
    layer = CausalSelfAttention(32, num_heads=4, rotary_dim=8, window=window).eval()
    x = torch.randn(2, 40, 32)
    mask = torch.ones(2, 40, dtype=torch.bool)
    with torch.no_grad():
        full = layer(x, mask)
        state: dict = {}
        parts = [layer(x[:, :9], mask[:, :9], state)]
        parts += [layer(x[:, t: t + 1], mask[:, t: t + 1], state) for t in range(9, 40)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_sliding_window_limits_what_a_query_sees():
    layer = CausalSelfAttention(16, num_heads=2, rotary_dim=8, window=3).eval()
    x = torch.randn(1, 30, 16)
    mask = torch.ones(1, 30, dtype=torch.bool)
    x2 = x.clone()
    x2[:, 10] += 5.0  # position 10 is visible to queries 10..13 only
    with torch.no_grad():
        diff = (layer(x2, mask) - layer(x, mask)).abs().amax(-1)[0]
    assert torch.all(diff[:10] == 0) and torch.all(diff[10:14] > 0) and torch.all(diff[14:] < 1e-6)


# -- whole model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ALL_TINY)
def test_incremental_inference_equals_full_forward(preset):
    ids = random_ids(3, 160)
    with torch.no_grad():
        def rows_differ(out) -> bool:  # rows must differ in how much they compress
            rates = [stage.boundary_mask.float().mean(1) for stage in out.stages]
            return all(float(r.max() - r.min()) > 0.005 for r in rates)

        for seed in range(20):  # a perturbed router whose p stay clear of 0.5 (fp noise cannot flip them)
            model = make_model(preset, seed=seed)
            full = model(ids)
            if min_margin(full) > 1e-4 and rows_differ(full):
                break
        assert min_margin(full) > 1e-4, "no router perturbation kept p away from 0.5"
        assert rows_differ(full), "no router perturbation made the rows compress differently"
        state: dict = {}
        parts = [model(ids[:, :40], state=state).logits]
        parts += [model(ids[:, t: t + 1], state=state).logits for t in range(40, 160)]
    assert torch.allclose(torch.cat(parts, 1), full.logits, atol=2e-5)


def test_step_with_inactive_rows_leaves_their_state_untouched():
    model = make_model("tiny")
    ids = random_ids(2, 60)
    with torch.no_grad():
        full = model(ids[:1])
        state: dict = {}
        model(ids[:, :30], state=state)
        active = torch.tensor([[True], [False]])
        outs = []
        for t in range(30, 60):  # row 1 never advances; row 0 must be unaffected by it
            outs.append(model(ids[:, t: t + 1], mask=active, state=state).logits[:1])
    assert torch.allclose(torch.cat(outs, 1), full.logits[:, 30:], atol=2e-5)


@pytest.mark.parametrize("preset", ["tiny", "tiny-1stage"])
def test_causality_at_every_stage(preset):
    model = make_model(preset)
    ids = random_ids(1, 200)
    t = 120
    changed = ids.clone()
    changed[:, t:] = random_ids(1, 200, seed=7)[:, t:]
    changed[:, t] = 2 if ids[0, t] != 2 else 3
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a.logits[:, :t], b.logits[:, :t], atol=1e-5)
    assert not torch.allclose(a.logits[:, t:], b.logits[:, t:], atol=1e-3)
    # boundaries before t are identical at the outer stage and at every inner stage
    limit = t
    for sa, sb in zip(a.stages, b.stages):
        assert torch.equal(sa.boundary_mask[:, :limit], sb.boundary_mask[:, :limit])
        limit = int(sa.boundary_mask[0, :limit].sum())


@pytest.mark.parametrize("preset", ["tiny", "tiny-tpp"])
def test_right_padding_does_not_change_valid_outputs(preset):
    model = make_model(preset)
    ids = random_ids(3, 120)
    lengths = [120, 77, 31]
    mask = torch.arange(120)[None] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batched = model(ids.masked_fill(~mask, 0), mask)
        for r, n in enumerate(lengths):
            alone = model(ids[r: r + 1, :n])
            assert torch.allclose(batched.logits[r, :n], alone.logits[0], atol=1e-5)
            for sb, sa in zip(batched.stages, alone.stages):
                n_valid = int(sa.mask[0].sum())
                assert torch.equal(sb.boundary_mask[r, :n_valid], sa.boundary_mask[0, :n_valid])
            if batched.stages:  # padded positions are never boundaries
                assert not batched.stages[0].boundary_mask[r, lengths[r]:].any()


def test_first_position_is_always_a_boundary():
    model = make_model("tiny", perturb=0.0)
    with torch.no_grad():
        out = model(random_ids(2, 50))
    for stage in out.stages:
        assert torch.all(stage.boundary_prob[:, 0] == 1) and torch.all(stage.boundary_mask[:, 0])


# -- loss -----------------------------------------------------------------------------------------

def _routing(p: torch.Tensor, mask: torch.Tensor) -> StageRouting:
    return StageRouting(p, (p > 0.5) & mask, mask, torch.zeros(1, 1, dtype=torch.long))


def test_ratio_loss_is_one_on_target_and_gradient_sign():
    N = 3.0
    p = torch.tensor([[0.9, 0.1, 0.2, 0.8, 0.3, 0.2]])  # F = 2/6 = 1/N, G = 2.5/6
    mask = torch.ones_like(p, dtype=torch.bool)
    loss, F_, G_ = ratio_loss(_routing(p, mask), N)
    assert F_ == pytest.approx(1 / 3)
    assert float(loss) == pytest.approx(N / (N - 1) * ((N - 1) * F_ * G_ + (1 - F_) * (1 - G_)))
    p_target = torch.tensor([[0.9, 0.1, 0.1, 0.9, 0.0, 0.0]])  # G = 1/3 too
    assert float(ratio_loss(_routing(p_target, mask), N)[0]) == pytest.approx(1.0)
    for probs, sign in (([0.9, 0.8, 0.7, 0.6, 0.1, 0.2], 1), ([0.9, 0.1, 0.1, 0.1, 0.1, 0.1], -1)):
        q = torch.tensor([probs], requires_grad=True)
        loss, F_, _ = ratio_loss(_routing(q, mask), N)
        loss.backward()
        assert math.copysign(1, float(q.grad.sum())) == sign == math.copysign(1, N * F_ - 1)


def test_ratio_loss_ignores_padding():
    p = torch.tensor([[0.9, 0.1, 0.2, 0.7, 0.7, 0.7]])
    mask = torch.tensor([[True, True, True, False, False, False]])
    loss, F_, G_ = ratio_loss(_routing(p, mask), 3.0)
    loss_trimmed, F2, G2 = ratio_loss(_routing(p[:, :3], mask[:, :3]), 3.0)
    assert (F_, G_) == pytest.approx((F2, G2)) and F_ == pytest.approx(1 / 3)
    assert float(loss) == pytest.approx(float(loss_trimmed))


def test_loss_values_and_router_receives_gradients():
    model = make_model("tiny").train()
    ids = random_ids(2, 100)
    ids[0, 50:60] = 6  # N targets are not predicted
    out = model.loss(ids, ratio_targets=(3.0, 2.0), alpha=0.02)
    assert out.n_predicted == 2 * 99 - 10
    assert 1.0 < float(out.nll.detach()) < 2.0  # ~ln 4 = 1.386 at init
    expected = out.nll + 0.02 * sum(out.ratio_loss)
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()))
    out.loss.backward()
    for module in model.modules():
        if isinstance(module, RoutingModule):
            assert module.q_proj.weight.grad is not None and module.q_proj.weight.grad.abs().sum() > 0
            assert module.k_proj.weight.grad.abs().sum() > 0


# -- init, parameters, optimiser groups ------------------------------------------------------------

def test_initialisation_follows_hnet():
    model = DNAHNet(get_preset("small"))
    b = model.backbone
    assert torch.all(b.residual_proj.weight == 0) and torch.all(b.main.residual_proj.weight == 0)
    assert torch.equal(b.router.q_proj.weight, torch.eye(192)) and torch.equal(b.main.router.k_proj.weight, torch.eye(256))
    assert torch.all(b.main.pad_dimension == 0) and torch.all(b.main.main.pad_dimension == 0)
    assert b.pad_dimension is None
    # out_proj/fc2 std = 0.02 / sqrt(n_res), n_res accumulated outside-in: 8, 8+12, 20+16
    layout = model.config.arch_layout
    n_res = [layout_height(layout[0]) * 2, 0, 0]
    n_res[1] = n_res[0] + layout_height(layout[1][0]) * 2
    n_res[2] = n_res[1] + layout_height(layout[1][1][0])
    assert n_res == [8, 20, 36]
    stacks = [b.encoder, b.main.encoder, b.main.main.main]
    for stack, n in zip(stacks, n_res):
        w = torch.cat([m.weight.detach().flatten() for name, m in stack.named_modules() if name.endswith("out_proj")])
        assert float(w.std()) == pytest.approx(0.02 / math.sqrt(n), rel=0.05)
    assert float(model.embeddings.weight.detach().std()) == pytest.approx(1.0, rel=0.1)


def _mamba_params(d, n, headdim, expand=2, k=4):
    di = expand * d
    h = di // headdim
    conv = di + 2 * n
    return d * (2 * di + 2 * n + h) + conv * k + conv + 3 * h + di + di * d


def _attn_params(d):
    return 4 * d * d


def _mlp_params(d, f):
    f = 128 * math.ceil(f / 128)
    return 3 * d * f


def _stack_params(layout, d, f, n, headdim):
    from dnahnet_cli.model.layers import parse_layout

    total = d  # final norm
    for kind in parse_layout(layout):
        if kind.lower() == "m":
            total += d + _mamba_params(d, n, headdim)
        elif kind.lower() in "erl":  # Hyena: in/out projections, 3-tap featurizers, inner filter (hyena.py)
            total += d + 4 * d * d + 3 * d * 3 + {"e": 7 * d, "r": 128 * d, "l": 2 * 16 * d}[kind.lower()]
        else:
            total += d + _attn_params(d)
        if kind.isupper():
            total += d + _mlp_params(d, f)
    return total


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_formula(name):
    cfg = get_preset(name)
    with torch.device("meta"):
        counts = DNAHNet(cfg).parameter_counts()
    expected, node, d_prev = 8 * cfg.d_model[0] + 4 * cfg.d_model[0], cfg.arch_layout, cfg.d_model[0]
    for s in range(cfg.n_stages + 1):
        d, f = cfg.d_model[s], cfg.d_intermediate[s]
        n, hd = (cfg.d_state[s] if isinstance(cfg.d_state, list) else cfg.d_state), (cfg.headdim if isinstance(cfg.headdim, int) else cfg.headdim[s])
        expected += d - d_prev  # pad vector
        if len(node) == 1:
            expected += _stack_params(node[0], d, f, n, hd)
            break
        expected += _stack_params(node[0], d, f, n, hd) + _stack_params(node[2], d, f, n, hd)
        expected += 2 * d * d + d * d + d  # router q,k + residual_proj (with bias)
        node, d_prev = node[1], d
    assert counts["total"] == expected


def test_preset_sizes_and_encoder_decoder_share():
    def share(name):
        with torch.device("meta"):
            c = DNAHNet(get_preset(name)).parameter_counts()
        return c["total"], sum(v for k, v in c.items() if k.endswith((".encoder", ".decoder"))) / c["total"]

    total, frac = share("base")
    assert 180e6 < total < 220e6 and 0.25 < frac < 0.36
    for baseline in ("base-tpp", "base-mamba2"):
        assert abs(share(baseline)[0] / total - 1) < 0.06
    total_small, _ = share("small")
    for baseline in ("small-tpp", "small-mamba2", "small-1stage"):
        assert abs(share(baseline)[0] / total_small - 1) < 0.15
    assert share("tiny")[0] < 1.5e6


def test_param_groups_lr_multipliers_and_no_decay_on_1d():
    model = DNAHNet(get_preset("tiny"))
    groups = model.param_groups(weight_decay=0.1)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["embeddings.weight"]["lr_multiplier"] == 2.0
    assert by_name["backbone.encoder.layers.0.mixer.in_proj.weight"]["lr_multiplier"] == 2.0
    assert by_name["backbone.main.encoder.layers.1.mixer.in_proj.weight"]["lr_multiplier"] == 1.5
    assert by_name["backbone.main.main.main.layers.0.mlp.fc1.weight"]["lr_multiplier"] == 1.0
    assert by_name["backbone.main.main.pad_dimension"]["lr_multiplier"] == 1.0
    for name, group in by_name.items():
        param = dict(model.named_parameters())[name]
        assert group["weight_decay"] == (0.1 if param.ndim >= 2 else 0.0), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("bias", [False, True])
def test_aligned_linear_is_nn_linear_with_a_padded_gemm(bias):
    """Mamba2's in_proj pads its odd output width to a multiple of 16 for the GEMM (speed on CPUs); values,
    gradients, parameters and hooks stay nn.Linear's."""
    torch.manual_seed(0)
    aligned, plain = Linear(80, 389, bias=bias), torch.nn.Linear(80, 389, bias=bias)
    plain.load_state_dict(aligned.state_dict())
    assert list(aligned.state_dict()) == list(plain.state_dict())
    seen = []
    aligned.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    x = torch.randn(2, 300, 80, requires_grad=True)
    got, want = aligned(x), plain(x)
    assert got.shape == want.shape == (2, 300, 389) and got.stride(1) == 400  # a view of the padded GEMM
    assert seen == [(2, 300, 389)]
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(want)
    g_got = torch.autograd.grad((got * dy).sum(), [x, *aligned.parameters()])
    g_want = torch.autograd.grad((want * dy).sum(), [x, *plain.parameters()])
    for a, b in zip(g_got, g_want):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    previous = kernels.active_kernels()["mode"]
    kernels.set_kernels("torch")  # the reference path: a plain GEMM
    try:
        assert aligned(x).is_contiguous()
    finally:
        kernels.set_kernels(previous)


def test_an_empty_layer_group_is_the_norm_alone():
    """The config accepts a zero count ("T0": no layer), as the official H-Net's Isotropic does, but the forward
    once added a residual that no layer had made (TypeError)."""
    from dnahnet_cli.model.config import ModelConfig

    cfg = ModelConfig(arch_layout=["m2", ["T0"], "m2"], d_model=[32, 32], d_intermediate=[0, 64], num_heads=[2, 2],
                      rotary_emb_dim=[8, 8], window_size=[-1, -1], d_state=8, headdim=16, ratio_targets=[2.0])
    torch.manual_seed(0)
    model = DNAHNet(cfg).eval()
    from dnahnet_cli.model.layers import Isotropic

    (empty,) = [m for m in model.modules() if isinstance(m, Isotropic) and len(m.layers) == 0]
    ids = torch.randint(0, 4, (2, 40))
    with torch.no_grad():
        logits = model(ids).logits
        x = torch.randn(1, 5, 32)
        assert torch.equal(empty(x, torch.ones(1, 5, dtype=torch.bool)), empty.rmsnorm(x))
    assert logits.shape[:2] == (2, 40) and torch.isfinite(logits).all()
