"""The process group of a `dnahnet train` run under torchrun (one process and no group otherwise), and the device
each process trains on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dnahnet_cli.model.precision import resolve_device as checked_device


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t


def process_group_backend(use_cuda: bool) -> str:
    """NCCL for the GPU tensors (DDP's gradients), gloo for the CPU ones: the token counts and validation sums
    are reduced as CPU tensors, which a plain "nccl" group refuses ("No backend type associated with device
    type cpu")."""
    return "cpu:gloo,cuda:nccl" if use_cuda else "gloo"


def init_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs (with gloo for CPU tensors), gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=process_group_backend(use_cuda))
    return Dist(rank, local, world)


def resolve_device(name: str, d: Dist) -> torch.device:
    """The scoring commands' device checks (precision.resolve_device), with a bare "cuda" meaning this
    process's GPU under torchrun."""
    device = checked_device(name)
    return torch.device("cuda", d.local_rank) if device.type == "cuda" and device.index is None else device
