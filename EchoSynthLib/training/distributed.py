"""Training and synthesis under ``torchrun``: which process this is, and the few collective operations the
trainers need (PyTorch DDP; NCCL on GPUs, gloo on CPU).

Outside torchrun everything here is a no-op for a world of one process, so the same code runs on a laptop
and on many GPUs. Every step's global batch is drawn from (seed, step) as before; each process takes its
share (``Rank.part``), so a run's result does not depend on the number of processes beyond the order of
floating-point reductions, and resume stays exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from EchoSynthLib.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: sharded synthesis with the simulator needs none
    import torch

Batch = TypeVar("Batch", list, "torch.Tensor")  # what ``Rank.part`` slices


@dataclass(frozen=True)
class Rank:
    """This process's place: ``index`` of ``world`` processes, ``local`` index on its machine."""

    index: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """True for the one process that logs and writes files."""
        return self.index == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world > 1

    def part(self, items: Batch) -> Batch:
        """This process's share of a global batch (every ``world``-th item from ``index``), of the same
        type: a list of indices, or a tensor of per-sample draws."""
        return items[self.index :: self.world]

    def check_batch(self, batch_size: int) -> None:
        """InputError unless the global batch splits evenly over the processes."""
        if batch_size % self.world:
            raise InputError(
                f"batch_size {batch_size} does not split over {self.world} processes; use a multiple of "
                f"{self.world}"
            )


def rank_from_environment() -> Rank:
    """The Rank torchrun describes in the environment (a world of one without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Rank(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: torch.device) -> Rank:
    """Join the process group torchrun set up (once), NCCL for CUDA devices and gloo otherwise; on a GPU
    each process uses the device of its local rank."""
    import torch

    rank = rank_from_environment()
    if rank.distributed and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(rank.local)
        torch.distributed.init_process_group(backend)
    return rank


def local_device(device: torch.device, rank: Rank) -> torch.device:
    """The device this process trains on (its own GPU under torchrun)."""
    if device.type == "cuda" and rank.distributed:
        import torch

        return torch.device("cuda", rank.local)
    return device


def barrier(rank: Rank) -> None:
    """Wait for every process (nothing for a world of one)."""
    if rank.distributed:
        import torch

        torch.distributed.barrier()


def mean_over_processes(values: dict[str, float], rank: Rank, device: torch.device) -> dict[str, float]:
    """The mean of each value over the processes (for logging the global batch's losses)."""
    if not rank.distributed or not values:
        return values
    import torch

    tensor = torch.tensor([values[k] for k in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return {k: float(v) / rank.world for k, v in zip(values, tensor.tolist(), strict=True)}


def wrap(model: torch.nn.Module, rank: Rank, device: torch.device) -> torch.nn.Module:
    """The model as DistributedDataParallel (gradients averaged over processes), or itself."""
    if not rank.distributed:
        return model
    import torch

    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
