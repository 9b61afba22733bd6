"""Data parallelism with PyTorch's own engine: torchrun starts the processes, DistributedDataParallel averages
the gradients, and this module holds the little that tinylm adds around them.

Each optimisation step trains on one global batch of batch_size x grad_accum x processes sequences, cut into
micro-batches of batch_size: process r computes micro-batches r*K ... r*K+K-1 (K = grad_accum), one after the
other, summing their gradients before DDP averages them across processes. A micro-batch's loss is weighted by
its share of the global batch's targets (masked tokens, or documents), so the step is the same optimisation as
one pass over the whole global batch, however it is split. Only rank 0 prints, logs and writes checkpoints.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from tinylm.devices import console, resolve_device
from tinylm.errors import Interrupted, TinyLMError

TIMEOUT = timedelta(minutes=60)  # rank 0 validates and saves alone; the others wait that long at most


@dataclass(frozen=True)
class Layout:
    """How a step's global batch is cut: into world_size x grad_accum micro-batches, of which this process
    computes `chunks`."""

    world_size: int = 1
    rank: int = 0
    grad_accum: int = 1

    @property
    def micro_batches(self) -> int:
        return self.world_size * self.grad_accum

    @property
    def chunks(self) -> range:
        return range(self.rank * self.grad_accum, (self.rank + 1) * self.grad_accum)


@dataclass
class World:
    """This process's place among the processes torchrun started (one process and no group without it)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # gloo or nccl; None with one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def layout(self, grad_accum: int = 1) -> Layout:
        return Layout(self.size, self.rank, grad_accum)

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (the values themselves with one process)."""
        if self.size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_sum_named(self, values: dict[str, float]) -> dict[str, float]:
        """all_sum of named values."""
        return dict(zip(values, self.all_sum(list(values.values()))))

    def barrier(self):
        if self.size > 1:
            dist.barrier(device_ids=[self.device.index]) if self.backend == "nccl" else dist.barrier()

    @contextmanager
    def local_main_first(self):
        """The body runs on each machine's first process, then on the others (e.g. encode a corpus once into
        the cache, which the others then read)."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()


def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's rank (0 without torchrun), known before any process group starts."""
    return int(os.environ.get("RANK", "0"))


def start(device: str = "auto") -> World:
    """The World of this process; under torchrun, its process group (gloo on CPUs, nccl on GPUs) is started.

    device: auto (CUDA when present), cpu or cuda. With CUDA each process of a machine takes the GPU of its
    local rank. The environment variable TINYLM_BACKEND=gloo|nccl overrides the choice of backend (gloo lets
    several processes share one GPU, e.g. to test the multi-process path on a single GPU).
    """
    size, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    backend = os.environ.get("TINYLM_BACKEND") or ("nccl" if chosen.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl") or (backend == "nccl" and chosen.type != "cuda"):
        raise TinyLMError(f"TINYLM_BACKEND={backend!r}: use gloo, or nccl with CUDA GPUs")
    if chosen.type == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus and backend == "nccl":
            raise TinyLMError(f"process {local_rank} of this machine has no GPU of its own: {gpus} GPU(s) here; "
                              "start at most that many processes per machine (torchrun --nproc-per-node), or "
                              "pass --device cpu")
        chosen = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(chosen)
    world = World(size, rank, local_rank, chosen, backend if size > 1 else None)
    if size > 1 and not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=TIMEOUT, rank=rank, world_size=size,
                                    **({"device_id": chosen} if backend == "nccl" else {}))
        except (RuntimeError, ValueError) as e:
            raise TinyLMError(f"cannot join the {size}-process group ({backend}): {' '.join(str(e).split())[:200]}")
    if not world.is_main:
        console.quiet = True  # one progress bar and one set of messages, from rank 0
    return world


def stop():
    """Leave the process group (at the end of a run started by `start`)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str = "auto"):
    """`start` for the length of a run; the process group it started is left at the end."""
    owned = launched() and not dist.is_initialized()
    world = start(device)
    try:
        yield world
        # Leave together: rank 0 may still be writing the model, and a process that tears its connections
        # down while another still uses them can be aborted by gloo (1 run in 40 here), which torchrun takes
        # for a failed run.
        world.barrier()
    except Interrupted:  # a stop all processes agreed on
        world.barrier()
        raise
    finally:
        if owned:
            stop()


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """DistributedDataParallel around the model with several processes; the model itself with one."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
