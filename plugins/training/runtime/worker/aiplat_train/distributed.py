"""Process-group setup for one process, a torchrun gang, or the scheduler's gang.

Both torchrun and the core's scheduler set ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with more than one process the group is initialised from them (``env://``) with
NCCL on CUDA and gloo on CPU.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    size: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self):
        return self.size > 1

    @property
    def is_main(self):
        return self.rank == 0


def init_world():
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    # The scheduler runs one replica per node, so without LOCAL_RANK the process is alone on its node.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return World(size=size, rank=rank, local_rank=local_rank, device=device)


def barrier(world):
    if world.distributed:
        dist.barrier()


def mean_across(world, value):
    """The mean of a float over all ranks (the value itself in one process)."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device if world.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.item() / world.size


def sum_across(world, values):
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device if world.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def any_across(world, flag):
    """True on every rank when it is true on one: all ranks stop at the same step."""
    if not world.distributed:
        return flag
    return sum_across(world, [1.0 if flag else 0.0])[0] > 0


def shutdown(world):
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
