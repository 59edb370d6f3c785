"""Chunked SSD and the dechunk EMA against plain float64 recurrences."""

import pytest
import torch

from conftest import kernel_mode

from dnahnet_cli.model import ssd
from dnahnet_cli.model.ssd import ema_chunked, ema_sequential, ssd_chunked, ssd_sequential


def _inputs(b=2, l=150, h=4, p=8, g=1, n=16, scale=2.0):
    x = torch.randn(b, l, h, p, dtype=torch.float64)
    a = -torch.rand(b, l, h, dtype=torch.float64) * scale
    B = torch.randn(b, l, g, n, dtype=torch.float64)
    C = torch.randn(b, l, g, n, dtype=torch.float64)
    return x, a, B, C


@pytest.mark.parametrize("length", [1, 37, 150])
@pytest.mark.parametrize("chunk", [8, 16, 64, 100])
def test_chunked_ssd_equals_recurrence(length, chunk):
    x, a, B, C = _inputs(l=length)
    init = torch.randn(2, 4, 8, 16, dtype=torch.float64)
    y_ref, s_ref = ssd_sequential(x, a, B, C, init)
    y, s = ssd_chunked(x, a, B, C, chunk, init)
    assert torch.allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    assert torch.allclose(s, s_ref, rtol=1e-10, atol=1e-10)


def test_ssd_two_groups_and_continuation():
    x, a, B, C = _inputs(l=90, h=4, g=2)
    y_full, s_full = ssd_chunked(x, a, B, C, 16)
    y1, s1 = ssd_chunked(x[:, :41], a[:, :41], B[:, :41], C[:, :41], 16)
    y2, s2 = ssd_chunked(x[:, 41:], a[:, 41:], B[:, 41:], C[:, 41:], 16, initial_state=s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y_full, atol=1e-10)
    assert torch.allclose(s2, s_full, atol=1e-10)
    y_ref, _ = ssd_sequential(x, a, B, C)
    assert torch.allclose(y_full, y_ref, atol=1e-10)


def test_fp32_accuracy_and_finite_gradients_with_large_decay():
    x, a, B, C = (t.float() for t in _inputs(l=300, scale=60.0))  # dt*|A| up to 60: deep decays
    x.requires_grad_(True)
    a.requires_grad_(True)
    y, s = ssd_chunked(x, a, B, C, 64)
    y_ref, _ = ssd_sequential(*(t.double() for t in (x, a, B, C)))
    assert (y.double() - y_ref).abs().max() / y_ref.abs().max() < 1e-5
    (y.sum() + s.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(a.grad).all()


def test_decay_backward_in_closed_form_equals_autograd():
    """The hand-written backward of the within-chunk decay: gradcheck in float64, and in fp32 the gradient that
    autograd takes through the plain forward (same sums; deep decays and a zero-decay padded tail included)."""
    a = (-torch.rand(2, 1, 3, 4, 16, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(ssd.within_chunk_decay, (a,))
    a32 = -torch.rand(2, 1, 5, 6, 64) * 30.0
    a32[..., 50:] = 0.0
    weights = torch.randn(2, 1, 5, 6, 64, 64)
    grads = []
    for fn in (ssd.within_chunk_decay, ssd._decay_forward):
        leaf = a32.clone().requires_grad_()
        (fn(leaf) * weights).sum().backward()
        grads.append(leaf.grad)
    assert torch.isfinite(grads[0]).all()
    assert (grads[0] - grads[1]).norm() / grads[1].norm() < 1e-6
    with torch.no_grad():  # no gradient wanted: the plain forward, not the autograd Function
        assert ssd.within_chunk_decay(a32.requires_grad_()).grad_fn is None


def test_padding_with_zero_decay_keeps_final_state():
    x, a, B, C = _inputs(l=50)
    _, s = ssd_chunked(x[:, :30], a[:, :30], B[:, :30], C[:, :30], 16)
    x2, a2 = x.clone(), a.clone()
    x2[:, 30:] = 0
    a2[:, 30:] = 0
    _, s_padded = ssd_chunked(x2, a2, B, C, 16)
    assert torch.allclose(s, s_padded, atol=1e-12)


@pytest.mark.parametrize("m", [1, 63, 200])
def test_ema_chunked_equals_loop(m):
    v = torch.randn(3, m, 32, dtype=torch.float64)
    w = torch.rand(3, m, dtype=torch.float64) * 0.4999 + 0.5  # boundaries have P in (0.5, 1)
    init = torch.randn(3, 32, dtype=torch.float64)
    e, last = ema_chunked(v, w, init, chunk_size=16)
    e_ref = ema_sequential(v, w, init)
    assert torch.allclose(e, e_ref, atol=1e-12)
    assert torch.allclose(last, e_ref[:, -1], atol=1e-12)


def test_ema_long_sequence_fp32_does_not_overflow():
    v = torch.randn(1, 2000, 8)
    w = torch.full((1, 2000), 0.6)
    e, _ = ema_chunked(v, w)
    e_ref = ema_sequential(v.double(), w.double())
    assert torch.isfinite(e).all()
    assert (e.double() - e_ref).abs().max() < 1e-5


@pytest.mark.parametrize("headdim", [16, 32, 64])
def test_mamba2_inference_tiles_match_the_configured_chunk(headdim):
    """Without a gradient, Mamba2 scans with shorter tiles (ssd.inference_chunk); the output and the carried
    state must equal the configured chunk's to fp32 rounding (relative 1e-5)."""
    from dnahnet_cli.model.layers import Mamba2
    from dnahnet_cli.model.ssd import inference_chunk

    assert inference_chunk(64, headdim) < 64
    torch.manual_seed(0)
    layer = Mamba2(64, d_state=16, headdim=headdim, chunk_size=64)
    u = torch.randn(2, 300, 64)
    mask = torch.ones(2, 300, dtype=torch.bool)
    with kernel_mode("torch"):  # the tiles are the reference path's: the compiled kernels would not tile at all
        with torch.no_grad():
            st_short = {}
            y_short = layer(u, mask, st_short)
        with torch.enable_grad(), _configured_training_chunk():
            st_cfg = {}
            y_cfg = layer(u, mask, st_cfg).detach()
    assert ((y_short - y_cfg).norm() / y_cfg.norm()).item() < 1e-5
    assert ((st_short["ssm"] - st_cfg["ssm"].detach()).norm() / st_cfg["ssm"].norm()).item() < 1e-5


class _configured_training_chunk:
    """Within the block, Mamba2 trains with its configured chunk instead of `ssd.training_chunk`'s tiles."""

    def __enter__(self):
        from dnahnet_cli.model import layers

        self.real = layers.training_chunk
        layers.training_chunk = lambda chunk, headdim: chunk

    def __exit__(self, *exc):
        from dnahnet_cli.model import layers

        layers.training_chunk = self.real


@pytest.mark.parametrize("headdim", [16, 32])
def test_mamba2_training_tiles_give_the_configured_chunks_gradients(headdim):
    """With a gradient, Mamba2 scans with `ssd.training_chunk`'s tiles (the head width): the loss and every
    parameter's gradient must equal the configured chunk's (64) to fp32 rounding (relative 1e-5)."""
    from dnahnet_cli.model.layers import Mamba2
    from dnahnet_cli.model.ssd import training_chunk

    assert training_chunk(64, headdim) == headdim and training_chunk(64, 64) == 64 and training_chunk(8, 16) == 8
    torch.manual_seed(0)
    layer = Mamba2(64, d_state=16, headdim=headdim, chunk_size=64)
    u = torch.randn(2, 300, 64)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 250:] = False  # a padded row: dt = 0 there
    target = torch.randn(2, 300, 64)
    results = []
    for configured in (False, True):
        with kernel_mode("torch"), _configured_training_chunk() if configured else torch.enable_grad():
            loss = ((layer(u, mask) - target) ** 2).mean()
            grads = torch.autograd.grad(loss, list(layer.parameters()))
        results.append((loss.detach(), grads))
    (l_tile, g_tile), (l_cfg, g_cfg) = results
    assert abs(l_tile - l_cfg) / l_cfg < 1e-6
    for a, b in zip(g_tile, g_cfg):
        assert ((a - b).norm() / b.norm()).item() < 1e-5


@pytest.mark.parametrize("chunk", [8, 64])
def test_chunked_ssd_gradients_equal_the_recurrences(chunk):
    """Gradients of every input of the chunked scan (within-chunk products, carried chunk states, initial state)
    against autograd through the float64 loop, with a length that pads the last chunk."""
    x, a, B, C = _inputs(l=45, h=4, g=2)
    init = torch.randn(2, 4, 8, 16, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, a, B, C, init)]
    wy, ws = torch.randn(2, 45, 4, 8, dtype=torch.float64), torch.randn(2, 4, 8, 16, dtype=torch.float64)
    grads = []
    for fn in (lambda *t: ssd_chunked(*t[:4], chunk, t[4]), ssd_sequential):
        y, s = fn(*leaves)
        grads.append(torch.autograd.grad((y * wy).sum() + (s * ws).sum(), leaves))
    for g_chunked, g_loop in zip(*grads):
        assert torch.allclose(g_chunked, g_loop, rtol=1e-9, atol=1e-9)


def test_within_chunk_output_backward_in_closed_form():
    """`ssd.within_chunk_output`'s hand-written backward: gradcheck in float64, and in fp32 the gradients
    autograd takes through the plain products (deep decays and a zero-decay padded tail included)."""
    g = torch.Generator().manual_seed(0)
    cb = torch.randn(2, 1, 3, 8, 8, dtype=torch.float64, generator=g)
    a = -torch.rand(2, 1, 2, 3, 8, dtype=torch.float64, generator=g)
    x = torch.randn(2, 1, 2, 3, 8, 4, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(ssd._WithinChunkOutput.apply, tuple(t.requires_grad_() for t in (cb, a, x)))
    cb = torch.randn(2, 1, 5, 64, 64, generator=g)
    a = -torch.rand(2, 1, 4, 5, 64, generator=g) * 30.0
    a[..., 50:] = 0.0
    x = torch.randn(2, 1, 4, 5, 64, 16, generator=g)
    w = torch.randn(2, 1, 4, 5, 64, 16, generator=g)
    grads = []
    for fn in (ssd.within_chunk_output, lambda c, d, v: (c[:, :, None] * ssd._decay_forward(d)) @ v):
        leaves = [t.clone().requires_grad_() for t in (cb, a, x)]
        grads.append(torch.autograd.grad((fn(*leaves) * w).sum(), leaves))
    for fused, plain in zip(*grads):
        assert torch.isfinite(fused).all()
        assert ((fused - plain).norm() / plain.norm()).item() < 1e-5
    with torch.no_grad():
        assert ssd.within_chunk_output(cb, a, x.requires_grad_()).grad_fn is None


@pytest.mark.parametrize("batch", [1, 3])
def test_causal_conv_silu_backward_in_closed_form(batch):
    """The depthwise causal conv + SiLU's hand-written backward: gradcheck in float64, and in fp32 the values and
    gradients of torch's conv1d + SiLU (relative 1e-6)."""
    import torch.nn.functional as F

    from dnahnet_cli.model.layers import _CausalConvSiLU, causal_depthwise_conv_silu

    g = torch.Generator().manual_seed(0)
    full = torch.randn(batch, 3 + 20, 6, dtype=torch.float64, generator=g)
    w = torch.randn(6, 1, 4, dtype=torch.float64, generator=g)
    bias = torch.randn(6, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(_CausalConvSiLU.apply, tuple(t.requires_grad_() for t in (full, w, bias)))
    full = torch.randn(batch, 3 + 200, 40, generator=g).requires_grad_()
    w = torch.randn(40, 1, 4, generator=g).requires_grad_()
    bias = torch.randn(40, generator=g).requires_grad_()
    out = causal_depthwise_conv_silu(full, w, bias)
    ref = F.silu(F.conv1d(full.transpose(1, 2), w, bias, groups=40)).transpose(1, 2)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-6
    wout = torch.randn_like(ref)
    for mine, theirs in zip(torch.autograd.grad(out, (full, w, bias), wout), torch.autograd.grad(ref, (full, w, bias), wout)):
        assert ((mine - theirs).norm() / theirs.norm()).item() < 1e-6


def test_within_chunk_output_backward_stays_fp32_under_autocast():
    """backward() called inside a bf16 autocast region must not run the closed-form products in bf16."""
    g = torch.Generator().manual_seed(1)
    cb, a, x = torch.randn(1, 1, 4, 32, 32, generator=g), -torch.rand(1, 1, 2, 4, 32, generator=g), torch.randn(1, 1, 2, 4, 32, 16, generator=g)
    w = torch.randn(1, 1, 2, 4, 32, 16, generator=g)
    grads = []
    for autocast in (False, True):
        leaves = [t.clone().requires_grad_() for t in (cb, a, x)]
        out = (ssd.within_chunk_output(*leaves) * w).sum()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            grads.append(torch.autograd.grad(out, leaves))
    for under_autocast, plain in zip(grads[1], grads[0]):
        assert under_autocast.dtype == torch.float32
        assert ((under_autocast - plain).norm() / plain.norm()).item() < 1e-6
