"""The precision policy (model/precision.py) holds under autocast: every fp32 island matches fp32 to
~1e-6 while the GEMM-heavy parts really do run in bf16, and --dtype auto decides from the hardware."""


import pytest
import torch

from dnahnet_cli.model.hnet import RoutingModule, dechunk
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.precision import choose_dtype, cpu_bf16_features
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.model.ssd import ema_chunked, ssd_chunked, ssd_step

BF16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
FP32_TOL = 1e-6  # norm-relative error allowed for an fp32 island inside bf16 autocast


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def test_ssd_scan_stays_fp32_under_autocast():
    b, l, h, p, n = 2, 300, 4, 16, 32
    x, B, C = torch.randn(b, l, h, p), torch.randn(b, l, 1, n), torch.randn(b, l, 1, n)
    a = -torch.rand(b, l, h) * 2
    y_ref, s_ref = ssd_chunked(x, a, B, C, 64)
    with BF16():
        y, s = ssd_chunked(x, a, B, C, 64)
        y_step, _ = ssd_step(torch.zeros(b, h, p, n), x[:, 0], a[:, 0], B[:, 0, 0][:, None], C[:, 0, 0][:, None])
    assert y.dtype == torch.float32 and rel(y, y_ref) < FP32_TOL and rel(s, s_ref) < FP32_TOL
    assert rel(y_step, y_ref[:, 0]) < FP32_TOL
    # the control: the same contraction left to autocast really is bf16-accurate only (so the test can fail)
    with BF16():
        cb = C[..., 0, :] @ B[..., 0, :].transpose(-1, -2)
    assert rel(cb, C[..., 0, :] @ B[..., 0, :].transpose(-1, -2)) > 1e-4


def test_dechunk_ema_stays_fp32_under_autocast():
    v, w = torch.randn(2, 500, 64), torch.rand(2, 500) * 0.98 + 0.01
    e_ref, last_ref = ema_chunked(v, w)
    with BF16():
        e, last = ema_chunked(v, w)
    assert e.dtype == torch.float32 and rel(e, e_ref) < FP32_TOL and rel(last, last_ref) < FP32_TOL
    boundary = torch.rand(2, 900) < 0.5
    boundary[:, 0] = True
    m = int(boundary.sum(1).max())
    zhat, p = torch.randn(2, m, 64), torch.rand(2, m)
    mask = torch.arange(m)[None] < boundary.sum(1)[:, None]
    with BF16():
        u, _ = dechunk(zhat.bfloat16(), p, mask, boundary, None)
    assert rel(u, dechunk(zhat.bfloat16().float(), p, mask, boundary, None)[0]) < FP32_TOL


def test_router_cosine_stays_fp32_under_autocast():
    torch.manual_seed(1)
    router = RoutingModule(96)
    with torch.no_grad():
        for lin in (router.q_proj, router.k_proj):
            lin.weight.add_(torch.randn_like(lin.weight) * 0.1)
    h = torch.randn(3, 400, 96)
    mask = torch.ones(3, 400, dtype=torch.bool)
    p_ref, b_ref = router(h, mask)
    with BF16():
        p, b = router(h, mask)
    assert p.dtype == torch.float32 and rel(p, p_ref) < FP32_TOL and torch.equal(b, b_ref)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-1stage"])
def test_fp32_islands_while_the_main_network_runs_bf16(preset, mode):
    """Scoring (eval) keeps encoders and the nucleotide decoder fp32; training runs them under autocast as the
    official H-Net does. Router, residual path, scans and head are fp32 in both."""
    torch.manual_seed(0)
    model = DNAHNet(get_preset(preset)).train(mode == "train")
    with torch.no_grad():
        for stage in [model.backbone] + ([model.backbone.main] if preset == "tiny" else []):
            stage.residual_proj.weight.normal_(0, 0.05)
    seen: dict[str, torch.dtype] = {}

    def hook(name, pick=lambda out: out):
        def record(mod, args, out):
            seen.setdefault(name, pick(out).dtype)  # returns None: the output is left alone
        return record

    model.backbone.residual_proj.register_forward_hook(hook("residual_proj"))
    model.backbone.router.q_proj.register_forward_hook(hook("router"))
    model.lm_head.register_forward_hook(hook("lm_head"))
    model.backbone.encoder.layers[1].mixer.in_proj.register_forward_hook(hook("encoder_in_proj"))
    model.backbone.decoder.layers[0].mixer.in_proj.register_forward_hook(hook("nt_decoder_in_proj"))
    innermost = model.backbone.main
    while not innermost.innermost:
        innermost = innermost.main
    innermost.main.layers[0].mixer.Wqkv.register_forward_hook(hook("main_network_qkv"))
    innermost.main.layers[0].mlp.fc1.register_forward_hook(hook("main_network_mlp"))
    model.backbone.encoder.layers[0].register_forward_hook(hook("residual", pick=lambda out: out[1]))
    ids = torch.randint(2, 6, (2, 300))
    with torch.inference_mode() if mode == "eval" else torch.enable_grad():
        ref = model(ids).logits
        seen.clear()
        with BF16():
            out = model(ids)
    outer = torch.float32 if mode == "eval" else torch.bfloat16
    assert seen == {"residual": torch.float32, "router": torch.float32, "encoder_in_proj": outer,
                    "nt_decoder_in_proj": outer, "main_network_qkv": torch.bfloat16,
                    "main_network_mlp": torch.bfloat16, "residual_proj": torch.float32, "lm_head": torch.float32}
    assert out.logits.dtype == torch.float32
    # close to fp32 (bf16 GEMMs in the inner stages only), but not equal: bf16 really ran
    assert 1e-7 < rel(out.logits, ref) < 1e-2


def test_residual_path_is_fp32_arithmetic_under_autocast():
    """residual_proj and each block's residual add compute in fp32 under bf16 autocast: their outputs match an
    fp32 recomputation from the same inputs to ~1e-7, where a bf16 GEMM would be off by ~1e-3."""
    torch.manual_seed(0)
    model = DNAHNet(get_preset("tiny")).train()
    with torch.no_grad():
        model.backbone.residual_proj.weight.normal_(0, 0.05)
    calls: dict[str, tuple] = {}

    def keep(name):
        def record(mod, args, out):
            calls.setdefault(name, (args, out))
        return record

    model.backbone.residual_proj.register_forward_hook(keep("residual_proj"))
    model.backbone.main.encoder.layers[1].register_forward_hook(keep("block"))  # a Mamba2 block (no MLP) in a bf16 stage
    with BF16():
        model(torch.randint(2, 6, (2, 300)))
    (h,), out = calls["residual_proj"]
    proj = model.backbone.residual_proj
    exact = torch.nn.functional.linear(h.double(), proj.weight.double(), proj.bias.double())
    assert out.dtype == torch.float32 and rel(out, exact) < FP32_TOL
    with BF16():
        bf16 = proj(h)
    assert rel(bf16, exact) > 1e-4  # the control: the same Linear left to autocast is visibly less exact
    (hidden, residual, _mask, _state), (_, residual_out) = calls["block"]
    assert hidden.dtype == torch.bfloat16  # the previous mixer's output: bf16 really flows into the add
    expect = hidden.double() + (0 if residual is None else residual.double())
    assert residual_out.dtype == torch.float32 and rel(residual_out, expect) < FP32_TOL


def test_choose_dtype():
    cpu = torch.device("cpu")
    assert choose_dtype("float32", cpu) == ("float32", "requested")
    assert choose_dtype("bf16", cpu)[0] == "bfloat16"
    name, why = choose_dtype("auto", cpu)
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    listed = ("amx_bf16" in flags) or ("avx512_bf16" in flags)
    assert (name == "bfloat16") == bool(cpu_bf16_features()), (name, why)
    # a flag the kernel lists may still be unusable (a VM without AMX tile permission: torch's probe says no),
    # but a CPU that lists neither flag never gets bf16
    assert listed or not cpu_bf16_features(), (name, why)
    assert why.startswith("auto: ")




@pytest.mark.parametrize("capability, expect", [((7, 5), "float32"), ((7, 0), "float32"), ((8, 0), "bfloat16"),
                                                ((9, 0), "bfloat16")])
def test_auto_on_cuda_wants_native_bf16_not_emulation(monkeypatch, capability, expect):
    """A T4 (7.5) or V100 (7.0) can hold bf16 tensors, so torch.cuda.is_bf16_supported() says yes by default
    (emulation), but its bf16 matmuls are slower than fp32: auto must pick fp32 there and bf16 from Ampere (8.0) on,
    for the device asked for."""
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (asked.append(d), capability)[1])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch answers for all four
    name, why = choose_dtype("auto", torch.device("cuda:1"))
    assert name == expect, why
    assert asked == [torch.device("cuda:1")] and f"{capability[0]}.{capability[1]}" in why
