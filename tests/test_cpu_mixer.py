"""The compiled CPU kernels of the Mamba2 mixer (dnahnet_cli/model/cpu_mixer.py) against the plain-PyTorch reference.

Tolerances: each kernel is the reference's fp32 arithmetic in another order (and exp as a polynomial within a
few ulp), so outputs and final states agree to ~1e-7 relative; the tests allow 1e-5 per kernel and 1e-4 in
logits for a whole model, where 16 mixers compound rounding."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import loss_and_gradients
from dnahnet_cli.model import cpu_mixer, kernels
from dnahnet_cli.model.layers import GatedRMSNorm, causal_depthwise_conv_silu
from dnahnet_cli.model.ssd import ssd_chunked

pytestmark = pytest.mark.skipif(cpu_mixer._compiler() is None, reason="no C compiler: the reference path runs")


def _problem(b: int, l: int, h: int, p: int, n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xbc = torch.randn(b, l, h * p + 2 * n, generator=gen)
    dt = torch.rand(b, l, h, generator=gen) * 0.3
    dt[-1, l // 2:] = 0.0  # a padded row: the state must stop changing there
    A, D = -torch.rand(h, generator=gen) * 6 - 0.2, torch.randn(h, generator=gen)
    init = torch.randn(b, h, p, n, generator=gen)
    return xbc, dt, A, D, init


def _reference(xbc, dt, A, D, init, h, p, n):
    b, l, _ = xbc.shape
    x = xbc[..., : h * p].reshape(b, l, h, p)
    B, C = xbc[..., h * p: h * p + n].reshape(b, l, 1, n), xbc[..., h * p + n:].reshape(b, l, 1, n)
    y, state = ssd_chunked(x * dt[..., None], dt * A, B, C, 16, init)
    return (y + x * D[:, None]).reshape(b, l, h * p), state


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def test_builds_and_passes_its_own_check():
    assert cpu_mixer.load() is not None, cpu_mixer.status()
    assert cpu_mixer.status().startswith("compiled C kernels")
    assert kernels.cpu_kernels().startswith("mamba2+attention=compiled-c")


@pytest.mark.parametrize("shape", [(2, 300, 8, 16, 16), (3, 257, 5, 32, 32), (1, 130, 6, 64, 64)],
                         ids=["tiny-heads", "cpu-heads", "small-heads"])
def test_scan_matches_chunked_reference(shape):
    b, l, h, p, n = shape
    xbc, dt, A, D, init = _problem(*shape)
    y, state = cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n, init)
    ref_y, ref_state = _reference(xbc, dt, A, D, init, h, p, n)
    assert _rel(y, ref_y) < 1e-5 and _rel(state, ref_state) < 1e-5
    # the padded row's final state is its state at the last valid position
    y_half, state_half = cpu_mixer.ssd_scan(xbc[-1:, : l // 2], dt[-1:, : l // 2], A, D, h, p, n, init[-1:])
    assert _rel(state[-1:], state_half) < 1e-6
    # no initial state means zeros
    y0, _ = cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n, None)
    assert _rel(y0, _reference(xbc, dt, A, D, torch.zeros_like(init), h, p, n)[0]) < 1e-5


@pytest.mark.parametrize("p, l", [(16, 96), (32, 97)])
def test_scan_two_positions_per_pass_is_bitwise_one_at_a_time(p, l):
    """Heads up to 32 wide take two positions per pass over the state (mamba2_cpu.c) with the arithmetic of one
    position at a time. A checkpoint at every position (every=1) forces single steps throughout; without
    checkpoints every position but an odd length's last is paired: the outputs and final states must be identical."""
    b, h, n = 2, 3, 16
    xbc, dt, A, D, init = _problem(b, l, h, p, n, seed=p)
    paired, paired_state, _, _ = cpu_mixer._scan(xbc, dt, A, D, h, p, n, init, 1, None)
    single, single_state, ckpt, _ = cpu_mixer._scan(xbc, dt, A, D, h, p, n, init, 1, 1)
    assert ckpt is not None and ckpt.shape[2] == l
    assert torch.equal(paired, single) and torch.equal(paired_state, single_state)


def test_scan_error_stays_bounded_on_periodic_input_with_a_slow_head():
    """With the state and the decay factor in fp32, a head decaying over ~17,000 steps summed the same rounding at
    every step of a period-2 input (`(AC)n`): 3.5e-6 relative at 1 kb, 1.5e-5 at 4 kb, 5.5e-5 at 16 kb against a
    float64 recurrence (1 - decay alone was off by 1e-3 in fp32). In fp64 it stays ~3e-8 at every length."""
    torch.manual_seed(0)
    h, p, n, l = 2, 16, 16, 16384
    xbc = torch.randn(2, h * p + 2 * n).repeat(l // 2, 1)[None].contiguous()
    dt = torch.full((1, l, h), 0.05)
    A, D = torch.tensor([-1.0 / (0.05 * 17000), -0.5]), torch.ones(h)
    y, _ = cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n)
    x = xbc[0, :2].double()  # the input has period 2: so has the float64 recurrence's step
    X, B, C = x[:, :h * p].view(2, h, p), x[:, h * p:h * p + n], x[:, h * p + n:]
    decay = torch.exp(0.05 * A.double())[:, None, None]
    s = torch.zeros(h, p, n, dtype=torch.float64)
    for t in range(l):
        s = decay * s + (X[t % 2] * 0.05)[:, :, None] * B[t % 2]
        if t + 1 in (1024, 4096, l):
            ref = (s * C[t % 2]).sum(-1) + D.double()[:, None] * X[t % 2]
            got = y[0, t].double().view(h, p)
            assert float((got - ref).norm() / ref.norm()) < 1e-6, t


@pytest.mark.parametrize("channels,scale", [(160, 1.0), (40, 30.0)], ids=["tiny-width", "saturating"])
def test_conv_silu_matches_reference(channels, scale):
    gen = torch.Generator().manual_seed(2)
    full = torch.randn(3, 3 + 301, channels, generator=gen) * scale  # 3 history rows + 301 new ones
    weight, bias = torch.randn(channels, 1, 4, generator=gen), torch.randn(channels, generator=gen)
    out = cpu_mixer.conv_silu(full, weight, bias)
    ref = causal_depthwise_conv_silu(full, weight, bias)
    assert out.shape == ref.shape and _rel(out, ref) < 1e-5
    assert torch.isfinite(out).all()


def test_gated_rmsnorm_matches_reference_on_a_strided_gate():
    gen = torch.Generator().manual_seed(3)
    proj = torch.randn(2, 257, 400, generator=gen) * 5  # z is a slice of the input projection, as in the mixer
    y, z = torch.randn(2, 257, 128, generator=gen), proj[..., 16:144]
    norm = GatedRMSNorm(128)
    norm.weight.data = torch.randn(128, generator=gen)
    with torch.no_grad():
        ref = norm(y, z)
        ref_bf16 = norm(y, z.to(torch.bfloat16))
    assert _rel(cpu_mixer.gated_rmsnorm(y, z, norm.weight, norm.eps), ref) < 1e-5
    # a bf16 gate (under autocast) is read as fp32, like the reference does
    assert _rel(cpu_mixer.gated_rmsnorm(y, z.to(torch.bfloat16), norm.weight, norm.eps), ref_bf16) < 1e-5


def test_block_residual_add_and_norm_take_one_compiled_pass(monkeypatch):
    from dnahnet_cli.model.layers import RMSNorm, add_norm

    gen = torch.Generator().manual_seed(5)
    norm = RMSNorm(96)
    norm.weight.data = torch.randn(96, generator=gen)
    hidden, residual = torch.randn(2, 300, 96, generator=gen), torch.randn(2, 300, 96, generator=gen) * 3
    calls = []
    real = cpu_mixer.add_rmsnorm
    cpu_mixer.load()  # its self-check calls add_rmsnorm too
    monkeypatch.setattr(cpu_mixer, "add_rmsnorm", lambda *a, **k: calls.append(1) or real(*a, **k))
    for block_out, skip in ((hidden, residual), (hidden.bfloat16(), residual), (hidden, None)):
        want = block_out.float() + (skip if skip is not None else 0)
        with torch.no_grad():
            got, got_norm = add_norm(block_out, skip, norm)
            want_norm = norm(want)
        assert got.dtype == got_norm.dtype == torch.float32
        assert _rel(got, want) < 1e-6 and _rel(got_norm, want_norm) < 1e-6  # seen: 0 and ~1e-7
    assert len(calls) == 3
    calls.clear()
    model, ids, mask = _model_and_batch()
    with torch.inference_mode():
        model(ids, mask)
    assert len(calls) > 20  # every block's one or two norms and each stack's final one
    calls.clear()
    seen = []
    handle = model.backbone.encoder.layers[0].norm1.register_forward_hook(lambda *a: seen.append(1))
    with torch.inference_mode():
        model(ids, mask)
    handle.remove()
    assert seen == [1] and len(calls) > 20  # a hooked norm runs as a module (its hook fires), the others compiled
    calls.clear()
    trained = []
    real_trainable = cpu_mixer.add_rmsnorm_trainable
    monkeypatch.setattr(cpu_mixer, "add_rmsnorm_trainable",
                        lambda *a, **k: trained.append(1) or real_trainable(*a, **k))
    model.train()
    model(ids, mask).logits.sum().backward()  # training: the same pass, with its compiled backward
    assert len(trained) > 20 and len(calls) == len(trained)


@pytest.mark.parametrize("hidden_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("uses", ["both", "norm only", "sum only"])
@pytest.mark.parametrize("with_residual", [True, False])
def test_training_add_norm_gradients_match_autograd_in_float64(hidden_dtype, uses, with_residual):
    """The compiled add + RMSNorm backward against torch's ops in float64, on one thread and split over two
    (the weight gradient is summed from one part per thread); outputs used as a block uses them (both), as a
    stack's last norm does (the norm only), or the sum alone."""
    gen = torch.Generator().manual_seed(7)
    b, l, d = 2, 700, 96
    hidden = (torch.randn(b, l, d, generator=gen) * 2).to(hidden_dtype)
    residual = torch.randn(b, l, d, generator=gen) * 3 if with_residual else None
    weight = torch.randn(d, generator=gen)
    d_sum, d_norm = torch.randn(b, l, d, generator=gen), torch.randn(b, l, d, generator=gen)

    def objective(total, normed):
        return ((total * d_sum).sum() if uses != "norm only" else 0) + ((normed * d_norm).sum() if uses != "sum only" else 0)

    def reference():
        leaves = [hidden.double().requires_grad_(), weight.double().requires_grad_()]
        if residual is not None:
            leaves.append(residual.double().requires_grad_())
        total = leaves[0] + (leaves[2] if residual is not None else 0)
        normed = total * torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + 1e-5) * leaves[1]
        return torch.autograd.grad(objective(total, normed), leaves, allow_unused=True, materialize_grads=True)

    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            leaves = [hidden.clone().requires_grad_(), weight.clone().requires_grad_()]
            if residual is not None:
                leaves.append(residual.clone().requires_grad_())
            total, normed = cpu_mixer.add_rmsnorm_trainable(leaves[0], leaves[2] if residual is not None else None,
                                                            leaves[1], 1e-5)
            results.append(torch.autograd.grad(objective(total, normed), leaves, allow_unused=True,
                                               materialize_grads=True))
    finally:
        torch.set_num_threads(before)
    assert results[0][0].dtype == hidden_dtype
    for i, (got, want) in enumerate(zip(results[0], reference())):  # d hidden, d weight, d residual
        rounded = i == 0 and hidden_dtype == torch.bfloat16  # a bf16 hidden's gradient is rounded to bf16
        assert float((got.double() - want).norm()) <= (4e-3 if rounded else 1e-6) * float(want.norm())  # 0 == 0
    for one, two in zip(*results):  # the same gradients whichever way the rows were split, up to rounding
        assert float((two - one).double().norm()) <= 1e-6 * float(one.double().norm())


@pytest.mark.parametrize("channels,scale", [(224, 1.0), (40, 30.0)], ids=["cpu-width", "saturating"])
def test_training_conv_gradients_match_autograd_through_the_reference(channels, scale):
    gen = torch.Generator().manual_seed(5)
    inputs = (torch.randn(2, 3 + 700, channels, generator=gen) * scale, torch.randn(channels, 1, 4, generator=gen),
              torch.randn(channels, generator=gen))
    grad_out = torch.randn(2, 700, channels, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):  # 2: the channels split over two threads (above PARALLEL_MIN_WORK)
            torch.set_num_threads(threads)
            leaves = [t.clone().requires_grad_() for t in inputs]
            out = cpu_mixer.conv_silu_trainable(*leaves)
            results.append((out, *torch.autograd.grad((out * grad_out).sum(), leaves)))
    finally:
        torch.set_num_threads(before)
    leaves = [t.clone().requires_grad_() for t in inputs]
    ref = causal_depthwise_conv_silu(*leaves)
    want = (ref, *torch.autograd.grad((ref * grad_out).sum(), leaves))
    for got, expected in zip(results[0], want):  # output, d full (history rows included), d weight, d bias
        assert got.shape == expected.shape and _rel(got, expected) < 1e-5
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_training_norm_gradients_match_autograd_through_the_reference():
    gen = torch.Generator().manual_seed(6)
    proj = torch.randn(2, 600, 400, generator=gen) * 4  # z a strided slice of the input projection
    y, weight = torch.randn(2, 600, 160, generator=gen), torch.randn(160, generator=gen)
    grad_out = torch.randn(2, 600, 160, generator=gen)
    norm = GatedRMSNorm(160)

    def grads(compiled: bool) -> list[torch.Tensor]:
        leaves = [y.clone().requires_grad_(), proj.clone().requires_grad_(), weight.clone().requires_grad_()]
        ys, ps, ws = leaves
        z = ps[..., 16:176]
        out = (cpu_mixer.gated_rmsnorm_trainable(ys, z, ws, norm.eps) if compiled
               else torch.func.functional_call(norm, {"weight": ws}, (ys, z)))
        return [out, *torch.autograd.grad((out * grad_out).sum(), leaves)]

    for got, want in zip(grads(True), grads(False)):  # output, d y, d projection (zero off the slice), d weight
        assert _rel(got, want) < 1e-5


def test_threads_split_jobs_without_changing_results():
    xbc, dt, A, D, init = _problem(3, 400, 5, 16, 16, seed=1)  # above PARALLEL_MIN_WORK for all three
    before = torch.get_num_threads()
    full, weight, bias = torch.randn(3, 403, 40), torch.randn(40, 1, 4), torch.randn(40)
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append((*cpu_mixer.ssd_scan(xbc, dt, A, D, 5, 16, 16, init), cpu_mixer.conv_silu(full, weight, bias),
                         cpu_mixer.gated_rmsnorm(xbc[..., :80], xbc[..., 10:90], D.repeat(16), 1e-5)))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def _model_and_batch():
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    model = DNAHNet(get_preset("tiny")).eval()
    ids = torch.randint(0, 4, (2, 600))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 400:] = False
    return model, ids, mask


def test_whole_model_inference_matches_reference_and_takes_the_kernels(monkeypatch):
    model, ids, mask = _model_and_batch()
    calls = []
    real = cpu_mixer.ssd_scan
    monkeypatch.setattr(cpu_mixer, "ssd_scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        kernels.set_kernels("torch")
        with torch.inference_mode():
            ref = model(ids, mask).logits
        assert not calls
        kernels.set_kernels("auto")
        with torch.inference_mode():
            fast = model(ids, mask).logits
    finally:
        kernels.set_kernels("auto")
    assert len(calls) == 16  # tiny: 4 + 4 Mamba2 layers at stage 0, 4 + 4 at stage 1
    valid = mask[..., None].expand_as(fast)
    assert float((fast - ref)[valid].abs().max()) < 1e-4


@pytest.mark.parametrize("p, n", [(16, 16), (32, 32), (64, 64), (8, 24)])  # each literal size; any other
def test_training_scan_gradients_match_autograd_through_the_reference(p, n):
    """Against autograd through the chunked reference in float64: the compiled backward (fp32, double sums where
    they run long) stays within ~2e-7 of it, while the same reference in fp32 is up to 1.2e-5 off in dA."""
    b, l, h = 2, 300, 3
    xbc, _, A, D, _ = _problem(b, l, h, p, n, seed=4)
    raw = torch.randn(b, l, h)
    mask = torch.ones(b, l)
    mask[1, 170:] = 0.0  # padding: dt = 0 there
    dy = torch.randn(b, l, h * p)

    def grads(compiled: bool) -> list[torch.Tensor]:
        dtype = torch.float32 if compiled else torch.float64
        leaves = [t.clone().to(dtype).requires_grad_() for t in (xbc, raw, A, D)]
        xs, raws, As, Ds = leaves
        dt = torch.nn.functional.softplus(raws) * mask[..., None].to(dtype)
        if compiled:
            y = cpu_mixer.ssd_scan_trainable(xs, dt, As, Ds, h, p, n)
        else:
            x = xs[..., : h * p].reshape(b, l, h, p)
            B, C = xs[..., h * p: h * p + n].reshape(b, l, 1, n), xs[..., h * p + n:].reshape(b, l, 1, n)
            y = (ssd_chunked(x * dt[..., None], dt * As, B, C, 16)[0] + x * Ds[:, None]).reshape(b, l, h * p)
        return [g.double() for g in torch.autograd.grad((y * dy.to(dtype)).sum(), leaves)]

    for got, want in zip(grads(True), grads(False)):
        assert _rel(got, want) < 1e-6


def test_training_step_gradients_match_the_reference_path(monkeypatch):
    model, ids, mask = _model_and_batch()
    model.train()
    calls = []
    for name in ("conv_silu_trainable", "ssd_scan_trainable", "gated_rmsnorm_trainable"):
        real = getattr(cpu_mixer, name)
        monkeypatch.setattr(cpu_mixer, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    ref_loss, ref = loss_and_gradients(model, ids, mask, "torch")
    assert not calls
    loss, got = loss_and_gradients(model, ids, mask, "auto")
    assert len(calls) == 3 * 16 and abs(loss - ref_loss) < 1e-5
    assert got.keys() == ref.keys()
    flat = lambda d: torch.cat([v.flatten() for v in d.values()])  # noqa: E731
    assert _rel(flat(got), flat(ref)) < 1e-4


def test_state_continuation_matches_one_pass():
    """Prefix reuse and incremental scoring continue from saved states: split forward == one forward."""
    model, ids, _ = _model_and_batch()
    ids = ids[:1]
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.inference_mode():
        whole = model(ids, mask).logits
        state: dict = {}
        first = model(ids[:, :333], mask[:, :333], state).logits
        second = model(ids[:, 333:], mask[:, 333:], state).logits
    assert float((torch.cat([first, second], 1) - whole).abs().max()) < 1e-4


def test_state_continues_through_pieces_shorter_than_the_conv_and_padding():
    """Pieces of 1 and 2 tokens (fewer than the conv's K-1 = 3 inputs, so part of the kept inputs comes from the
    previous piece's history) and right-padded rows of unequal length: the kept states still continue exactly."""
    model, ids, _ = _model_and_batch()
    ids = ids[:2, :120]
    lengths = torch.tensor([120, 95])
    mask = torch.arange(120)[None, :] < lengths[:, None]
    with torch.inference_mode():
        whole = model(ids, mask).logits
        state: dict = {}
        pieces, start = [], 0
        for stop in (1, 3, 50, 51, 120):
            pieces.append(model(ids[:, start:stop], mask[:, start:stop], state).logits)
            start = stop
    got = torch.cat(pieces, 1)
    assert float((got - whole)[mask].abs().max()) < 1e-4


@pytest.mark.parametrize("compiler", ["failing", "none"])
def test_without_a_compiler_the_reference_path_runs_with_one_note(tmp_path, compiler):
    """A compiler that fails, and none at all (that case once fell back silently, though the README promises a note)."""
    code = ("import torch; from dnahnet_cli.model import cpu_mixer, kernels; "
            "print(kernels.cpu_kernels()); print(cpu_mixer.status())")
    env = {**os.environ, "DNAHNET_CC": shutil.which("false") or "/bin/false", "DNAHNET_KERNEL_CACHE": str(tmp_path)}
    if compiler == "none":  # only the interpreter's own folder on PATH: no cc, gcc or clang
        env = {**{k: v for k, v in env.items() if k != "DNAHNET_CC"}, "PATH": str(Path(sys.executable).parent)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] in ("torch", "linear=onednn")  # oneDNN's linear needs no compiler
    assert res.stdout.splitlines()[1].startswith("unavailable:")
    notes = [line for line in res.stderr.splitlines() if "compiled CPU kernels" in line]
    assert len(notes) == 1 and "using the PyTorch reference path" in notes[0]
    assert not list(tmp_path.iterdir())  # nothing half-written left in the cache


def test_first_use_inside_inference_mode_still_loads(tmp_path):
    """Scoring runs under torch.inference_mode(); a first build from there must still pass its gradient check."""
    code = ("import torch; from dnahnet_cli.model import cpu_mixer, kernels\n"
            "with torch.inference_mode():\n    print(kernels.cpu_mixer(torch.zeros(2)))\nprint(cpu_mixer.status())")
    env = {**os.environ, "DNAHNET_KERNEL_CACHE": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["True", res.stdout.splitlines()[1]], res.stdout + res.stderr
    assert res.stdout.splitlines()[1].startswith("compiled C kernels") and not res.stderr


def test_first_use_inside_a_bf16_autocast_still_loads(tmp_path):
    """Training on a bf16 CPU runs its first mixer under autocast: the check's references must not round to bf16
    there (they did, and a resumed run fell back to the reference path while the first run had the kernels)."""
    code = ("import torch; from dnahnet_cli.model import cpu_mixer, kernels\n"
            "with torch.autocast('cpu', dtype=torch.bfloat16):\n    print(kernels.cpu_training_mixer(torch.zeros(2)))\n"
            "print(cpu_mixer.status())")
    env = {**os.environ, "DNAHNET_KERNEL_CACHE": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "True", res.stdout + res.stderr
    assert res.stdout.splitlines()[1].startswith("compiled C kernels") and not res.stderr


def test_unusable_cache_folders_fall_back_to_a_temporary_one(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = "from dnahnet_cli.model import cpu_mixer; print(cpu_mixer.status())"
    env = {**os.environ, "DNAHNET_KERNEL_CACHE": str(blocker / "kernels"), "XDG_CACHE_HOME": str(blocker)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("compiled C kernels"), res.stdout + res.stderr
    assert "dnahnet-kernels-" in res.stdout and f"DNAHNET_KERNEL_CACHE {blocker / 'kernels'} is not used" in res.stderr
    # no usable temporary folder either (a read-only container): the reference path, not a traceback
    no_temp = ("import tempfile\ndef none(*a, **k): raise FileNotFoundError('No usable temporary directory found')\n"
               "tempfile.gettempdir = tempfile.mkdtemp = none\n" + code)
    res = subprocess.run([sys.executable, "-c", no_temp], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("unavailable: FileNotFoundError"), res.stdout + res.stderr
    # Python's last resort for a temporary folder is the working directory: no build is left in a results folder
    work = tmp_path / "results"
    work.mkdir()
    cwd_only = "import os, tempfile\ntempfile.gettempdir = os.getcwd\n" + code
    env_cwd = {k: v for k, v in env.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    res = subprocess.run([sys.executable, "-c", cwd_only], capture_output=True, text=True, env=env_cwd, timeout=120,
                         cwd=work)
    assert res.returncode == 0 and "only the working directory" in res.stdout, res.stdout + res.stderr
    assert not list(work.iterdir())


def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    """A group-writable DNAHNET_KERNEL_CACHE (a lab's shared folder) rebuilt the library on every run and loaded
    it from there, and a second user, unable to replace the first one's .sha256, fell back to the reference path
    (numbers ~1e-3 nats apart): now such a folder is passed over, with a note, for the user's own cache."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)
    code = "from dnahnet_cli.model import cpu_mixer; print(cpu_mixer.status())"
    env = {**os.environ, "DNAHNET_KERNEL_CACHE": str(shared), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    seen = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0 and res.stdout.startswith("compiled C kernels"), res.stdout + res.stderr
        assert f"DNAHNET_KERNEL_CACHE {shared} is not used" in res.stderr
        (lib,) = (tmp_path / "xdg" / "dnahnet" / "kernels").glob("mamba2_cpu-*.so")
        seen.append((lib.stat().st_ino, lib.stat().st_mtime_ns))
    assert seen[0] == seen[1] and not list(shared.iterdir())  # built once, in the user's own cache


def test_a_damaged_or_foreign_library_in_the_cache_is_rebuilt_not_loaded(tmp_path):
    """A truncated .so was trusted forever (SIGBUS on every run); a zero-length one meant the slow path forever;
    and a library someone else could write (the shared /tmp fallback) was loaded as it was."""
    code = "from dnahnet_cli.model import cpu_mixer; print(cpu_mixer.status())"
    env = {**os.environ, "DNAHNET_KERNEL_CACHE": str(tmp_path)}

    def status() -> str:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr  # a truncated library once ended the process with SIGBUS
        return res.stdout.strip()

    assert status().startswith("compiled C kernels")
    (lib,) = tmp_path.glob("mamba2_cpu-*.so")
    whole = lib.read_bytes()
    for damage in (whole[:20000], b""):
        lib.write_bytes(damage)
        assert status().startswith("compiled C kernels") and lib.read_bytes() == whole
    os.chmod(lib, 0o777)  # writable by anyone: not loaded as it is
    assert status().startswith("compiled C kernels") and not os.stat(lib).st_mode & 0o022


@pytest.mark.parametrize("where", ["default", "DNAHNET_KERNEL_CACHE"])
def test_the_kernel_cache_is_reused_under_umask_002(tmp_path, where):
    """Under umask 002 (common on clusters) the cache folder came out group-writable, so the library in it was
    never trusted: every job of an array recompiled it and replaced it under the others."""
    code = "from dnahnet_cli.model import cpu_mixer; print(cpu_mixer.status())"
    env = {k: v for k, v in os.environ.items() if k != "DNAHNET_KERNEL_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    folder = tmp_path / "xdg" / "dnahnet" / "kernels"
    if where != "default":
        folder = tmp_path / "mine" / "kernels"
        env["DNAHNET_KERNEL_CACHE"] = str(folder)
    if where == "default":  # left group-writable by an earlier version: made private again
        folder.mkdir(parents=True)
        folder.chmod(0o775)
    seen = []
    for _ in range(2):
        res = subprocess.run(["bash", "-c", f"umask 002; exec {sys.executable} -c '{code}'"], capture_output=True,
                             text=True, env=env, timeout=300)
        assert res.returncode == 0 and res.stdout.startswith("compiled C kernels"), res.stdout + res.stderr
        (lib,) = folder.glob("mamba2_cpu-*.so")
        seen.append((lib.stat().st_ino, lib.stat().st_mtime_ns))
    assert seen[0] == seen[1]  # built once, then loaded
    assert not folder.stat().st_mode & 0o022


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the 512-bit options are x86's: elsewhere the second attempt is refused too")
def test_the_build_asks_for_512_bit_vectors_and_falls_back_where_the_compiler_refuses(tmp_path):
    """-march=native alone took GCC's tuning for the CPU model it guessed, which on an AMX Xeon under a hypervisor
    split every 16-float vector copy in two and made a forward 1.8x slower: the first attempt now asks for 512-bit
    vectors, a compiler that does not know those options (Clang) gets the next attempt, and a change of flags is a
    change of cache key, so an old build is not reused."""
    log = tmp_path / "calls.log"
    real = shutil.which("cc") or shutil.which("gcc")
    wrapper = tmp_path / "cc"
    wrapper.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n"
                       f"case \" $* \" in *\" -mmove-max=512 \"*) echo 'unknown argument' >&2; exit 1;; esac\n"
                       f"exec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    code = "from dnahnet_cli.model import cpu_mixer; print(cpu_mixer.status())"
    env = {**os.environ, "DNAHNET_CC": str(wrapper), "DNAHNET_KERNEL_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("compiled C kernels"), res.stdout + res.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "-mmove-max=512" in calls[0] and "-mprefer-vector-width=512" in calls[0]
    assert "-march=native -mprefer-vector-width=512" in calls[1] and "-mmove-max=512" not in calls[1]
    assert "; built with -march=native -mprefer-vector-width=512)" in res.stdout  # what info --device shows
    (built,) = (tmp_path / "cache").glob("mamba2_cpu-*.so")
    other = ("from dnahnet_cli.model import cpu_mixer\ncpu_mixer.COMPILE_FLAGS = (('-march=native',),)\n"
             "print(cpu_mixer.status())")
    res = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("compiled C kernels"), res.stdout + res.stderr
    assert built.name not in res.stdout and len(log.read_text().splitlines()) == 3  # its own build, not the first
