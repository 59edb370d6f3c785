"""`dnahnet check`: is this installation numerically sound?

Three kinds of checks, each PASS/FAIL with the measured deviation and its tolerance:
  1. reference values: the model's log-likelihood and boundary counts on a fixed real sequence (2 kb of
     E. coli K-12, shipped in the package) against values recorded with the weights (check.json: when a model
     is shipped, or by its owner);
  2. internal consistency, which needs no stored values: incremental (prefill + step) inference equals
     the full forward, and strand/batch composition does not change scores;
  3. kernels: when fast kernels are active (GPU kernels, or the compiled CPU kernels), their output against the
     plain-PyTorch reference path.
A silent precision or kernel fallback shows up as a FAIL instead of as quietly wrong scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.alphabet import BOS, encode
from dnahnet_cli.tasks.engine import LikelihoodEngine
from dnahnet_cli.genomics.fasta import iter_fasta
from dnahnet_cli.genomics.fileio import atomic_output

CHECK_SEQUENCE = Path(__file__).resolve().parents[1] / "data" / "check_sequence.fa"
REFERENCE_FILE = "check.json"
# fp32 on another CPU/BLAS changes summation order only: ~1e-6 relative; 1e-4 leaves room, flags real errors
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 1e-2}


@dataclass
class Check:
    name: str
    passed: bool
    value: float
    tolerance: float
    detail: str = ""
    skipped: str = ""  # why the check did not run ("" = it ran); a skipped check counts as passed
    exact: bool = False  # an identity (hashes), not a measured deviation: reported without one


def check_sequence() -> str:
    return next(iter(iter_fasta(CHECK_SEQUENCE)))[1]


def training_length_sequence(seq: str, window: int, cap: int = 16384) -> str:
    """The check sequence repeated to the model's training length (BOS included, at most `cap`), for the kernel
    check: a windowed attention layer (the `cpu` preset's stage 1 sees 1,023 chunks, ~3 kb) only slides past its
    window, where a fast kernel's windowing can go wrong, on inputs that long; the 2-kb sequence never fills it."""
    length = max(1, min(window, cap) - 1)
    return (seq * (length // len(seq) + 1))[:length]


def reference_values(engine: LikelihoodEngine, seq: str) -> dict:
    """What `check` compares: total log-likelihood, bits/nt and boundaries per stage on `seq`."""
    lp = engine.logprobs([seq])[0]
    tracks = engine.boundaries([seq])[0]
    return {
        "sequence_length": len(seq),
        "total_loglik": float(np.nansum(lp)),
        "bits_per_nt": float(-np.nanmean(lp) / np.log(2)),
        "boundaries_per_stage": [int((t > 0.5).sum()) for t in tracks],
        "precision": engine.dtype,
    }


def write_reference(engine: LikelihoodEngine, model_dir: Path) -> Path:
    """Record the reference values next to the weights (done when a model is shipped), with the sha256 of the
    weights and of the architecture: the values of a fixed 2-kb sequence hardly move when one tensor is changed by
    a few percent, or when an attention window longer than the check sequence's chunks is edited; the hashes do."""
    path = Path(model_dir) / REFERENCE_FILE
    values = {**reference_values(engine, check_sequence()), "weights_sha256": engine.provenance.get("sha256"),
              "config_sha256": engine.provenance.get("config_sha256")}
    with atomic_output(path) as fh:
        fh.write(json.dumps(values, indent=2) + "\n")
    return path


def _read_reference(path: Path) -> dict:
    """The recorded reference values (the shipped model's, or a user's own); a damaged file is a one-line error
    naming it, not a traceback."""
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(ref, dict):
            raise ValueError("not a JSON object")
        total, _, stages = ref["total_loglik"], ref["bits_per_nt"], ref["boundaries_per_stage"]
        length = ref.get("sequence_length")
        if isinstance(total, bool) or not isinstance(total, (int, float)) or not -math.inf < total < 0:
            raise ValueError(f"total_loglik must be a finite negative number, not {total!r}")
        if not isinstance(stages, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                   for x in stages):
            raise ValueError(f"boundaries_per_stage must be a list of counts, not {stages!r}")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise ValueError(f"sequence_length must be an integer, not {length!r}")
        for key in ("weights_sha256", "config_sha256"):
            if not isinstance(ref.get(key, ""), (str, type(None))):
                raise ValueError(f"{key} must be a string")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise DnahnetError(f"{path}: not valid reference values ({detail}); restore it from the model's release, "
                           f"or remove it to skip this check") from None
    return ref


def run_checks(engine: LikelihoodEngine, model_dir: Path, writing_reference: bool = False) -> list[Check]:
    seq = check_sequence()
    tol = TOLERANCE[engine.dtype]
    checks: list[Check] = []
    ref_path = Path(model_dir) / REFERENCE_FILE
    now = reference_values(engine, seq)
    if writing_reference:  # comparing the values with themselves would prove nothing
        checks.append(_skipped("recorded reference values (check.json)", "this run records them "
                               "(--write-reference), when the other checks pass"))
    elif not ref_path.is_file():
        checks.append(_skipped("recorded reference values (check.json)", f"no {REFERENCE_FILE} next to the weights "
                               "(dnahnet check --model DIR --write-reference records them)"))
    else:
        ref = _read_reference(ref_path)
        recorded, have = ref.get("weights_sha256"), engine.provenance.get("sha256")
        if recorded:  # reference values recorded before the hash was: the value checks alone
            checks.append(Check("weights are those the reference values were recorded for", recorded == have,
                                float(recorded != have), 0.0, f"sha256 {str(have)[:12]} vs {recorded[:12]}",
                                exact=True))
        recorded, have = ref.get("config_sha256"), engine.provenance.get("config_sha256")
        if recorded:  # config.json edited (e.g. an attention window): the 2-kb values may not notice
            checks.append(Check("architecture (config.json) is the one the reference values were recorded for",
                                recorded == have, float(recorded != have), 0.0,
                                f"sha256 {str(have)[:12]} vs {recorded[:12]}", exact=True))
        if ref.get("sequence_length", len(seq)) != len(seq):
            raise DnahnetError(f"{ref_path}: recorded for a {ref['sequence_length']}-nt check sequence, this "
                               f"installation's is {len(seq)} nt; record it again with --write-reference")
        rel = abs(now["total_loglik"] - ref["total_loglik"]) / abs(ref["total_loglik"])
        checks.append(Check("log-likelihood of the check sequence vs recorded value", rel <= tol, rel, tol,
                            f"{now['total_loglik'] / len(seq) / -math.log(2):.5f} vs "
                            f"{ref['total_loglik'] / len(seq) / -math.log(2):.5f} bits/nt"))
        a, b = now["boundaries_per_stage"], ref["boundaries_per_stage"]
        # a model without stages (Transformer++, Mamba2, StripedHyena2) has no boundaries; other stage counts fail
        moved = max((abs(x - y) / max(y, 1) for x, y in zip(a, b)), default=0.0) if len(a) == len(b) else math.inf
        checks.append(Check("boundary counts per stage vs recorded values", moved <= 0.01, moved, 0.01, f"{a} vs {b}"))
    checks.append(_incremental_check(engine, seq[:300], tol))
    checks.append(_batch_check(engine, seq, tol))
    checks.extend(_kernel_checks(engine, training_length_sequence(seq, engine.window)))
    checks.append(_auto_precision_check(engine, seq))
    return checks


def _skipped(name: str, why: str) -> Check:
    return Check(name, True, float("nan"), float("nan"), skipped=why)


def _auto_precision_check(engine: LikelihoodEngine, seq: str) -> Check:
    """What --dtype auto picks here (bf16 on AMX/AVX512-BF16 CPUs) against this fp32 engine: log-likelihood per
    nucleotide within 1e-3 nats and no boundary moved away from the 0.5 threshold."""
    from dnahnet_cli.model.precision import choose_dtype

    name = "--dtype auto vs float32"
    auto, why = choose_dtype("auto", engine.device)
    if engine.dtype != "float32":
        return _skipped(name, f"this run is --dtype {engine.dtype}; run with --dtype float32 to compare")
    if auto == "float32":
        return _skipped(name, f"{why}: auto is float32 here")
    other = LikelihoodEngine(engine.model, device=str(engine.device), dtype="auto")
    n = len(seq)
    per_nt = float(abs(engine.loglik([seq])[0] - other.loglik([seq])[0]) / n)
    moved = 0
    for p32, p16 in zip(engine.boundaries([seq])[0], other.boundaries([seq])[0]):
        moved += int(np.sum(((p32 > 0.5) != (p16 > 0.5)) & (np.abs(p32 - 0.5) >= 1e-2)))
    return Check(name, per_nt <= 1e-3 and moved == 0, per_nt, 1e-3,
                 f"{auto}: {why}; {moved} boundaries moved away from the threshold")


def _incremental_check(engine: LikelihoodEngine, seq: str, tol: float) -> Check:
    """Prefill half, then step one base at a time: must equal one full forward."""
    ids = torch.tensor(np.concatenate([[BOS], encode(seq)]).astype(np.int64), device=engine.device)[None]
    with torch.inference_mode(), engine._autocast():
        full = engine.model(ids).logits
        state: dict = {}
        parts = [engine.model(ids[:, :150], state=state).logits]
        parts += [engine.model(ids[:, t: t + 1], state=state).logits for t in range(150, ids.shape[1])]
    err = float((torch.cat(parts, 1) - full).abs().max() / full.abs().max())
    return Check("incremental inference equals the full forward", err <= tol, err, tol)


def _batch_check(engine: LikelihoodEngine, seq: str, tol: float) -> Check:
    """Scoring alone or in a padded batch with other lengths gives the same numbers."""
    alone = engine.loglik([seq])[0]
    batched = engine.loglik([seq[:500], seq, seq[:1234]])[1]
    rel = abs(alone - batched) / abs(alone)
    return Check("batch composition does not change scores", rel <= tol, rel, tol)


def _kernel_checks(engine: LikelihoodEngine, seq: str) -> list[Check]:
    """Fast GPU kernels (when active) against the plain-PyTorch path, at their stated tolerance."""
    try:
        from dnahnet_cli.model import kernels
    except ImportError:
        return []
    active = kernels.active_kernels()
    tol = 1e-2  # GPU kernels (nats per nucleotide, on average): TF32 dot products and other tiles
    if engine.device.type != "cuda":
        from dnahnet_cli.model import cpu_linear, cpu_mixer

        if kernels.cpu_kernels() == "torch":
            why = ("--kernels torch" if active["mode"] == "torch" else
                   f"compiled CPU kernels {cpu_mixer.status()}; oneDNN linear {cpu_linear.status()}")
            return [_skipped("fast kernels vs plain-PyTorch reference", why)]
        tol = 1e-4  # the CPU fast paths: the same arithmetic in another order, the scan state in double (~1e-7)
    elif all(v == "torch" for k, v in active.items() if k != "mode"):
        why = "--kernels torch" if active["mode"] == "torch" else "mamba-ssm / causal-conv1d / flash-attn not installed"
        return [_skipped("fast kernels vs plain-PyTorch reference", why)]
    previous = active["mode"]
    try:
        kernels.set_kernels("torch")
        reference = engine.logprobs([seq])[0]
        kernels.set_kernels(previous)
        fast = engine.logprobs([seq])[0]
    finally:
        kernels.set_kernels(previous)
    # per position, not the total: a kernel wrong past the attention window by opposite amounts at different
    # positions could cancel in a sum of ~1e4 nats
    diff = np.abs(fast - reference)
    mean = float(np.nanmean(diff))
    rel = float(abs(np.nansum(fast) - np.nansum(reference)) / abs(np.nansum(reference)))
    used = (str(kernels.active_kernels()) if engine.device.type == "cuda"
            else kernels.cpu_kernels(bf16=engine.dtype == "bfloat16"))
    detail = (f"mean |d log p| per nt over {len(seq):,} nt; max {float(np.nanmax(diff)):.1e}, total relative "
              f"{rel:.1e}; {used}")
    return [Check("fast kernels vs plain-PyTorch reference", mean <= tol, mean, tol, detail)]
