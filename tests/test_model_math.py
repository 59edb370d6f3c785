"""The layer maths that the parity tests cannot see, each against a hand-written reference: the decoder input
(u * STE(c) + skip, with STE's value exactly 1 and its gradient passed to c), the dechunk EMA and upsampling, the
router's orientation (W_q on h_{t-1}, W_k on h_t), SwiGLU's halves, NeoX RoPE with base 10000, and the H-Net
initialisation beyond out_proj. A reviewer broke each of these in memory and every earlier test still passed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dnahnet_cli.model.hnet import LENGTHS_PER_OCTAVE, RoutingModule, _STE, chunk_indices, dechunk, padded_length
from dnahnet_cli.model.layers import Mamba2, SwiGLU, apply_rotary, layout_height
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset


def _routed_model(seed: int = 0) -> DNAHNet:
    torch.manual_seed(seed)
    model = DNAHNet(get_preset("tiny")).eval()
    for module in model.modules():
        if isinstance(module, RoutingModule):
            module.q_proj.weight.data += 0.5 * torch.randn_like(module.q_proj.weight)
    model.backbone.residual_proj.weight.data.normal_(0, 0.05)
    return model


def test_decoder_input_is_upsampled_ema_plus_skip_exactly():
    """Forward value of the STE is exactly 1: the decoder sees u + residual_proj(h), not u * c + ..."""
    model = _routed_model()
    stage = model.backbone
    seen: dict = {}
    stage.decoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("dec_in", args[0]))
    stage.main.register_forward_hook(lambda m, args, out: seen.__setitem__("zhat", out[0]))
    stage.residual_proj.register_forward_hook(lambda m, args, out: seen.__setitem__("skip", out))
    stage.router.register_forward_hook(lambda m, args, out: seen.__setitem__("route", out))
    ids = torch.randint(2, 6, (2, 90), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model(ids)
    p, boundary = seen["route"]
    idx, chunk_mask = chunk_indices(boundary, LENGTHS_PER_OCTAVE)  # as a whole-window pass pads them
    u, _ = dechunk(seen["zhat"], p.gather(1, idx), chunk_mask, boundary, None)
    assert 0 < int(boundary.sum()) < boundary.numel()
    assert torch.equal(seen["dec_in"], u + seen["skip"])


def test_ste_passes_the_gradient_to_the_confidence():
    """d(u * STE(c))/dc = u: the router learns from the decoder through c (H-Net's confidence scaling)."""
    c = torch.rand(2, 7, requires_grad=True)
    u = torch.randn(2, 7, 5)
    out = u * _STE.apply(c)[..., None]
    assert torch.equal(out, u)
    weights = torch.randn(2, 7, 5)
    (out * weights).sum().backward()
    torch.testing.assert_close(c.grad, (u * weights).sum(-1), rtol=0, atol=1e-6)


def test_dechunk_matches_a_loop_over_positions():
    """e_j = P_j z_j + (1 - P_j) e_{j-1} over chunks, P = p at the chunk's start clamped to [1e-4, 1 - 1e-4];
    each position takes e of the latest chunk starting at or before it; `initial` before the first."""
    torch.manual_seed(0)
    b, l, d = 2, 23, 4
    p = torch.rand(b, l)
    p[:, 0] = 1.0
    boundary = p > 0.5
    boundary[1, 0] = False  # a continuation whose first positions precede its first chunk
    idx, chunk_mask = chunk_indices(boundary)
    zhat = torch.randn(b, idx.shape[1], d)
    initial = torch.randn(b, d)
    u, last = dechunk(zhat, p.gather(1, idx), chunk_mask, boundary, initial)
    for row in range(b):
        e, j = initial[row].clone(), 0
        for t in range(l):
            if boundary[row, t]:
                big_p = float(p[row, t].clamp(1e-4, 1 - 1e-4))
                e = big_p * zhat[row, j] + (1 - big_p) * e
                j += 1
            torch.testing.assert_close(u[row, t], e, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(last[row], e, rtol=1e-6, atol=1e-6)


def test_router_compares_the_previous_state_through_w_q_with_the_current_through_w_k():
    torch.manual_seed(1)
    router = RoutingModule(6)
    router.q_proj.weight.data = torch.randn(6, 6)
    router.k_proj.weight.data = torch.randn(6, 6)
    h = torch.randn(1, 9, 6)
    p, boundary = router(h, torch.ones(1, 9, dtype=torch.bool))
    for t in range(1, 9):
        cos = F.cosine_similarity(router.q_proj.weight @ h[0, t - 1], router.k_proj.weight @ h[0, t], dim=0)
        torch.testing.assert_close(p[0, t], ((1 - cos) / 2).clamp(0, 1), rtol=1e-5, atol=1e-6)
    assert p[0, 0] == 1.0 and bool(boundary[0, 0])
    tie = RoutingModule(2)  # p exactly 0.5 (orthogonal neighbours) is not a boundary: the rule is p > 0.5
    p, boundary = tie(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.ones(1, 2, dtype=torch.bool))
    assert p[0, 1] == 0.5 and not bool(boundary[0, 1])


def test_swiglu_gates_the_second_half():
    """fc1's output is [value | gate] and the block returns fc2(silu(gate) * value), as the official H-Net."""
    torch.manual_seed(2)
    mlp = SwiGLU(8, 128)
    x = torch.randn(3, 8)
    hidden = x @ mlp.fc1.weight.T
    value, gate = hidden[:, :128], hidden[:, 128:]
    torch.testing.assert_close(mlp(x), (F.silu(gate) * value) @ mlp.fc2.weight.T, rtol=1e-5, atol=1e-6)


def test_rotary_rotates_neox_halves_with_base_10000():
    """Channel i pairs with i + rotary_dim/2 (not i+1), angle = position / 10000^(i / (rotary_dim/2))."""
    torch.manual_seed(3)
    x = torch.randn(1, 5, 2, 10)  # (B, L, H, Dh), rotary on the first 8 channels
    positions = torch.arange(5)[None]
    out = apply_rotary(x, positions, 8)
    half = 4
    for t in range(5):
        for i in range(half):
            theta = t / 10000 ** (i / half)
            a, b = x[0, t, :, i], x[0, t, :, i + half]
            torch.testing.assert_close(out[0, t, :, i], a * math.cos(theta) - b * math.sin(theta), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(out[0, t, :, i + half], b * math.cos(theta) + a * math.sin(theta),
                                       rtol=1e-5, atol=1e-6)
    assert torch.equal(out[..., 8:], x[..., 8:])


def test_initialisation_beyond_out_proj():
    """fc2 scaled like out_proj by 1/sqrt(n_res); residual_proj keeps PyTorch's default bias (nonzero, within
    1/sqrt(d)); Mamba2's dt_bias is the inverse softplus of dt in [1e-3, 0.1] and A_log = log of [1, 16]; the head
    N(0, 0.02)."""
    torch.manual_seed(4)
    model = DNAHNet(get_preset("small"))
    b = model.backbone
    layout = model.config.arch_layout
    n_res_main = 2 * layout_height(layout[0]) + 2 * layout_height(layout[1][0]) + layout_height(layout[1][1][0])
    fc2 = torch.cat([m.weight.detach().flatten() for name, m in b.main.main.main.named_modules() if name.endswith("fc2")])
    assert float(fc2.std()) == pytest.approx(0.02 / math.sqrt(n_res_main), rel=0.1)
    bias = b.residual_proj.bias.detach()
    assert bool((bias != 0).any()) and float(bias.abs().max()) <= 1 / math.sqrt(bias.numel())
    mambas = [m for m in model.modules() if isinstance(m, Mamba2)]
    dt = torch.cat([F.softplus(m.dt_bias.detach()) for m in mambas])
    a_log = torch.cat([m.A_log.detach() for m in mambas])
    assert float(dt.min()) >= 1e-3 * 0.999 and float(dt.max()) <= 0.1 * 1.001
    assert float(a_log.min()) >= 0 and float(a_log.max()) <= math.log(16) + 1e-6
    assert abs(float(model.lm_head.weight.detach().std()) - 0.02) < 0.005


def test_padded_inner_sequences_change_no_valid_output_or_gradient(monkeypatch):
    """A whole-window pass pads each inner sequence with masked slots at its end (LENGTHS_PER_OCTAVE lengths per
    doubling): the loss and every parameter gradient equal those of the unpadded pass to fp32 rounding."""
    from dnahnet_cli.model import hnet

    model = _routed_model(seed=1).train()
    ids = torch.randint(2, 6, (2, 700), generator=torch.Generator().manual_seed(4))
    lengths = []
    model.backbone.main.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))

    def run(per_octave: int):
        monkeypatch.setattr(hnet, "LENGTHS_PER_OCTAVE", per_octave)
        model.zero_grad(set_to_none=True)
        out = model.loss(ids)
        out.loss.backward()
        return out.loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    ref_loss, ref = run(0)
    loss, got = run(4)  # coarse steps, so that this input is padded by several slots
    assert lengths[1] == padded_length(lengths[0], 4) > lengths[0]  # padding happened
    assert abs(float(loss - ref_loss)) < 1e-6
    assert got.keys() == ref.keys()
    for name, grad in got.items():
        assert float((grad - ref[name]).norm()) <= 1e-5 * float(ref[name].norm()) + 1e-9, name


def test_padded_lengths_step_by_a_sixteenth_of_their_octave():
    assert [padded_length(m, 16) for m in (0, 5, 16, 17, 31, 33, 150, 1366, 2731)] == \
        [0, 5, 16, 17, 31, 34, 152, 1408, 2816]
    assert padded_length(1366, 0) == 1366
    assert all(m <= padded_length(m, 16) < m * 17 / 16 + 1 for m in range(1, 5000))
