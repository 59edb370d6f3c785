"""Shared fixtures: small deterministic models and the path to the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# DNAHNET_TEST_DATA points elsewhere (e.g. a missing folder, to count what a user's clone skips)
SHARED_DATA = Path(os.environ.get("DNAHNET_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MISSING_DATA = ("needs the evaluation data set in ../shared/data beside the repository (E. coli K-12 MG1655 "
                "NC_000913.3 genome + NCBI GFF3, the 32-genome corpus, ProteinGym IF1 DMS, Keio essential genes); "
                "tests that need it skip without it")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data, skipping the test when the shared data is not present."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{MISSING_DATA}: {'/'.join(parts)}")
    return path


class kernel_mode:
    """Within the block, the process runs the given --kernels mode ("torch": the plain-PyTorch reference path,
    which the compiled CPU kernels would otherwise replace wherever a C compiler exists)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __enter__(self):
        from dnahnet_cli.model import kernels

        self.previous = kernels.kernel_mode()
        kernels.set_kernels(self.mode)

    def __exit__(self, *exc):
        from dnahnet_cli.model import kernels

        kernels.set_kernels(self.previous)


def loss_and_gradients(model, ids, mask, mode: str) -> tuple[float, dict[str, torch.Tensor]]:
    """One training loss and its parameters' gradients under --kernels `mode`: what the tests of a compiled
    training path compare with the plain-PyTorch reference ("torch")."""
    with kernel_mode(mode):
        model.zero_grad()
        loss = model.loss(ids, mask).loss
        loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def break_plotting(monkeypatch, module, function: str) -> None:
    """Make `module.function` (a command's plotting call) fail, as a real plot can, with "plot failed"."""
    from dnahnet_cli.errors import DnahnetError

    def broken(*_args, **_kw):
        raise DnahnetError("plot failed (simulated)")

    monkeypatch.setattr(module, function, broken)
