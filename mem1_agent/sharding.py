"""Working with FSDP2-sharded policies (``accelerate launch --config_file examples/accelerate/fsdp.yaml``).

Under FSDP2 (``torch.distributed.fsdp.fully_shard``, which accelerate's FSDP plugin applies at
``prepare``) each parameter is a ``DTensor`` holding this process's shard, and each shard unit
(every decoder layer, and the root module) all-gathers its parameters in a forward pre-hook.

Rollout cannot run on that: processes generate different numbers of tokens, so per-forward
all-gathers would pair up different forwards across processes (or wait forever), and generation
calls the LM directly rather than the root module whose hook gathers the root's parameters.
:func:`gathered_parameters` therefore gathers every unit once, keeps it gathered for the whole
rollout (no collective inside), and reshards afterwards: the FSDP2 counterpart of FSDP1's
``summon_full_params``. Checkpoints store each process's local shards (:func:`local`) and put them
back into the same layout (:func:`like_param`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return None
    return DTensor


def _fsdp_units(model: Any) -> list[Any]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return []
    root = getattr(model, "module", model)
    return [m for m in root.modules() if isinstance(m, FSDPModule)] if isinstance(root, torch.nn.Module) else []


def is_sharded(model: Any) -> bool:
    """Whether ``model`` (or what it wraps) is sharded with FSDP2."""
    return bool(_fsdp_units(model))


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``DTensor`` (a sharded parameter or optimizer state)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(t, dtensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a ``DTensor``; any other tensor unchanged."""
    return t.to_local() if is_dtensor(t) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (all-gathered: collective for a ``DTensor``)."""
    return t.full_tensor() if is_dtensor(t) else t


def like_param(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A stored local shard made a ``DTensor`` laid out like ``param`` (unchanged for a plain param)."""
    if not is_dtensor(param) or is_dtensor(value) or value.dim() == 0:
        return value
    return _dtensor_type().from_local(
        value.to(param.device), param.device_mesh, param.placements, shape=param.shape, stride=param.stride(), run_check=False
    )


def _reshard_settings(unit: Any) -> tuple[Any, list[Any]]:
    # FSDP2 keeps "reshard after forward" per parameter group (and an automatic flag that makes
    # the root keep its parameters); saved and put back as they were, not reset to a default.
    state = unit._get_fsdp_state()
    groups = list(getattr(state, "_fsdp_param_groups", []))
    return getattr(state, "_auto_reshard_after_forward", None), [g.post_forward_mesh_info for g in groups]


def _restore_reshard_settings(unit: Any, saved: tuple[Any, list[Any]]) -> None:
    state = unit._get_fsdp_state()
    auto, infos = saved
    if auto is not None:
        state._auto_reshard_after_forward = auto
    for group, info in zip(getattr(state, "_fsdp_param_groups", []), infos):
        group.post_forward_mesh_info = info


@contextmanager
def gathered_parameters(model: Any) -> Iterator[Any]:
    """Every shard unit of an FSDP2 model gathered on every process for the duration (collective on
    entry and exit); no collective runs inside, so processes may run different forwards (rollout).

    A no-op for a model that is not sharded.
    """
    units = _fsdp_units(model)
    if not units:
        yield model
        return
    # FSDP2 takes the first unit to run forward as the root; generation calls the LM (a child)
    # first, so settle the root as the outermost unit before anything runs.
    units[0]._get_fsdp_state()._lazy_init()
    saved = [_reshard_settings(u) for u in units]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield model
    finally:
        for unit, settings in zip(units, saved):
            unit.reshard()
            _restore_reshard_settings(unit, settings)
