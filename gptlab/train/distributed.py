"""Data parallelism: init from torchrun's environment, DDP or FSDP2 wrapping, rank-0 helpers.

`torchrun --nproc_per_node N -m gptlab -- pretrain ...` sets RANK / LOCAL_RANK / WORLD_SIZE /
MASTER_ADDR; a plain `gptlab pretrain` has none of them and runs as world size 1 with no
process group at all, so single-process code pays nothing for this module.

Backend: NCCL on CUDA, gloo on CPU. Strategy:
- `ddp` (default): every rank holds the whole model; gradients are all-reduced (averaged) in
  backward. During gradient-accumulation micro-steps the all-reduce is skipped (`no_sync`) and
  done once on the last micro-step.
- `fsdp`: FSDP2 `fully_shard` on each block and the root, for models that do not fit one
  device. Tested through torchrun on CPU+gloo against one process and against DDP (same losses
  to 1e-5); checkpoints gather a full state dict through `torch.distributed.checkpoint.state_dict`
  (see checkpoint.py). No `MixedPrecisionPolicy`: parameters and gradient reduction stay in the
  model's dtype, and autocast (bf16 on GPU) does the mixed precision, as under DDP.

Activation checkpointing (`--activation-checkpointing`, any strategy or none): each block's
forward runs under `torch.utils.checkpoint.checkpoint(use_reentrant=False)`, so backward
recomputes the block's activations instead of keeping them (memory ~ one block's activations
plus the residual stream per layer, for ~1/3 more compute). It is applied before `fully_shard`,
as torchtitan does, and replaces each block's `forward` on the instance rather than wrapping the
block in a module, so parameter names (checkpoints, optimizer groups) do not change.

Several machines: see docs/multinode.md (torchrun with `--nnodes 2 --node-rank K`; rehearsed as
2 nodes x 1 process on localhost by tests/test_distributed.py).
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gptlab.common import pick_device

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up (if any) and pick this rank's device.

    'auto' gives cuda:LOCAL_RANK when CUDA exists, else cpu. Idempotent: a second call returns
    the same info without re-initialising.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev == "cuda":
        dev = f"cuda:{local_rank}"
    if world > 1 and not dist.is_initialized():
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
            dist.init_process_group("nccl", device_id=torch.device(dev))
        else:
            dist.init_process_group("gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum across ranks (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def any_rank(flag: bool, device: str = "cpu") -> bool:
    """True on every rank if `flag` is True on any rank (so all ranks stop together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _recomputed_forward(self: nn.Module, *args, **kwargs):
    """A block's own forward under non-reentrant checkpointing while gradients are on.

    `type(self).forward` is the class's forward (under FSDP2 the generated subclass inherits
    it), so the instance attribute that points here is never called twice. Without gradients
    (evaluation, sampling with a KV cache) there is nothing to save, so no checkpoint.
    """
    plain = type(self).forward
    if not torch.is_grad_enabled():
        return plain(self, *args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    # preserve_rng_state (the default) replays dropout's random draws in the recompute.
    return checkpoint(plain, self, *args, use_reentrant=False, **kwargs)


def checkpoint_activations(model: nn.Module) -> nn.Module:
    """Recompute each block (`model.layers`) in backward instead of storing its activations.

    A bound method on the instance, so `copy.deepcopy` rebinds it to the copy and the module
    tree (and so every parameter name) stays as it was.
    """
    for block in getattr(model, "layers", []):
        block.forward = types.MethodType(_recomputed_forward, block)
    return model


def wrap_model(
    model: nn.Module, info: DistInfo, strategy: str = "ddp", activation_checkpointing: bool = False
) -> nn.Module:
    """DDP or FSDP2 around `model` when world size > 1; the model itself otherwise.

    Activation checkpointing, when asked, goes on first (also in a single process).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if activation_checkpointing:
        checkpoint_activations(model)
    if not info.enabled:
        return model
    if strategy == "ddp":
        device_ids = [torch.device(info.device).index] if info.device.startswith("cuda") else None
        return DDP(model, device_ids=device_ids)
    # Lazy: torch.distributed.fsdp takes ~0.8 s to import and only multi-process runs use it.
    from torch.distributed.fsdp import fully_shard

    # Shard each block separately so only one block's full weights exist at a time, then the
    # root (embeddings, final norm, head).
    for block in getattr(model, "layers", []):
        fully_shard(block)
    fully_shard(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def is_fsdp(model: nn.Module) -> bool:
    # FSDP2 needs a process group, so a single-process run never imports the FSDP modules
    # (~0.8 s to import).
    if not (dist.is_available() and dist.is_initialized()):
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap(model), FSDPModule)


@contextlib.contextmanager
def grad_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-steps (sync=False); sync on the last.

    DDP: `no_sync()`. FSDP2: `set_requires_gradient_sync`. Plain module: nothing to do.
    """
    inner = getattr(model, "_orig_mod", model)  # torch.compile(DDP(m)) keeps DDP inside
    if hasattr(inner, "no_sync") and not sync:
        with inner.no_sync():
            yield
        return
    fsdp_root = unwrap(model)
    if hasattr(fsdp_root, "set_requires_gradient_sync"):
        fsdp_root.set_requires_gradient_sync(sync)
    yield
