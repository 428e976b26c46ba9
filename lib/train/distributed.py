"""torchrun's environment: this process's rank, local rank and world size, its GPU, and the process group."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def distributed_context() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; initialises the process group once."""
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and torch.cuda.is_available():
        # NCCL runs a rank's collectives (all_gather_object's buffers too) on the current device: unset, every rank
        # would use cuda:0 ("duplicate GPU" from NCCL, or a hang at the first checkpoint)
        torch.cuda.set_device(local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), local_rank, world
