"""torch.distributed for the training loop: process group, device, DDP/FSDP2 wrapping, reductions.

``torchrun`` starts one process per device and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
without it the run is a single process and every helper here is a cheap no-op. Backend: nccl
on GPUs, gloo on CPU (how the tests run 2 processes on one machine).

DDP replicates the model and averages gradients; FSDP2 (``fully_shard``) shards each LLM decoder
layer and the root (embeddings, head, modalities), so an LLM larger than one device's memory
still trains. The
same ``torchrun`` command scales to several nodes (``--nnodes``, ``--rdzv-endpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mmgen.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str = "auto", backend: str = "auto") -> World:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device: cuda, but no CUDA GPU is visible")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        chosen = backend if backend != "auto" else ("nccl" if use_cuda else "gloo")
        if chosen == "nccl" and not use_cuda:
            raise ConfigError("distributed.backend: nccl needs GPUs; use gloo on CPU")
        dist.init_process_group(chosen, device_id=where if use_cuda else None)
    return World(rank, size, local_rank, where)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, strategy: str, world: World) -> nn.Module:
    """DDP or FSDP2 around ``model`` (already on ``world.device``); the model itself alone."""
    if not world.distributed:
        return model
    if strategy == "ddp":
        import gc

        from torch.nn.parallel import DistributedDataParallel

        gc.collect()  # an earlier stage's wrapper must be gone: its gradient hooks die with it
        ids = [world.device.index] if world.device.type == "cuda" else None
        # a pack without a modality leaves its projector out of the graph
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        if _is_fsdp(model):  # sharded in place by an earlier stage
            return model
        no_split = set(getattr(model.language_model, "_no_split_modules", None) or ())
        for module in model.language_model.modules():
            if type(module).__name__ in no_split:
                fully_shard(module)
        # modalities stay in the root's group: an encoder runs once per chunk of items, a number
        # that differs between ranks, and a separately sharded module would gather its weights
        # a different number of times on each rank (a collective mismatch)
        fully_shard(model)
        register_fsdp_forward_method(model, "generate")  # gathers the root's weights for it
        return model
    raise ConfigError(f"unknown distributed.strategy {strategy!r}; choose ddp or fsdp")


def unwrap(model: nn.Module) -> nn.Module:
    """The MultimodalModel inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return getattr(model, "module", model)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place; float64 on CPU keeps token counts exact)."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank: all ranks then act together (e.g. on a signal)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (e.g. the RNG states for a checkpoint)."""
    if not dist.is_initialized():
        return [value]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` on every rank (e.g. the checkpoint rank 0 chose to resume from)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# -- full (unsharded) state for checkpoints ---------------------------------------------------
# DDP and single processes use the plain state dicts: exact, and the optimizer's follows the
# parameter order, which the model's structure fixes. FSDP2 shards both, so they are gathered
# to full tensors (and scattered back on load) through torch.distributed.checkpoint.


def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full weights of an FSDP2 model (collective: every rank calls it); None otherwise (the
    unwrapped model's own state is used)."""
    if not _is_fsdp(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if not _is_fsdp(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    if not _is_fsdp(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, state, options=options)
