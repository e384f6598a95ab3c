"""Atomic, resumable training checkpoints.

A checkpoint is one file, ``<dir>/checkpoint.pt``, holding the model (unwrapped from
accelerate/DDP), optimizer and scheduler state, the step counter, free-form ``extra``
state (e.g. the next task seed) and, for every process, the RNG states of Python, NumPy
and torch (gathered to the main process), so a resumed multi-process run draws the same
random numbers it would have drawn.

The file is written to a temporary name in the same folder, flushed and fsync'ed,
then renamed over the old one (``os.replace`` is atomic on POSIX): killing training at
any moment leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (and CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _unwrap(model: Any, accelerator: Any) -> Any:
    return accelerator.unwrap_model(model) if accelerator is not None else getattr(model, "module", model)


def save_checkpoint(
    directory: str | os.PathLike,
    model: Any,
    step: int,
    optimizer: Any = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    accelerator: Any = None,
    generator: torch.Generator | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically (collective: call it on every process).

    ``generator`` (e.g. the sampling generator) is saved with each process's RNG state.
    """
    directory = Path(directory)
    rank = accelerator.process_index if accelerator is not None else 0
    rng = {"rng": rng_state(), "generator": generator.get_state() if generator is not None else None}
    rngs = [rng]
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        rngs = gather_object([rng])
    path = directory / CHECKPOINT_FILE
    if rank == 0:
        state = {
            "step": int(step),
            "model": _unwrap(model, accelerator).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "extra": dict(extra or {}),
            "rng": list(rngs),
        }
        atomic_save(state, path)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # any unpickling / zip error means the same thing to the user
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict) or "step" not in obj:
        raise CheckpointError(f"{path} is not a mem1 checkpoint (no 'step' entry)")
    return obj


def has_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a checkpoint."""
    return (Path(directory) / CHECKPOINT_FILE).is_file()


def load_checkpoint(
    directory: str | os.PathLike,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    accelerator: Any = None,
    generator: torch.Generator | None = None,
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model``/``optimizer``/``scheduler`` and the RNGs.

    Returns ``{"step": ..., "extra": {...}}``, or None when there is no checkpoint.
    Raises :class:`CheckpointError` (naming the file) when one exists but is unreadable.
    """
    directory = Path(directory)
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = _read(path)
    _unwrap(model, accelerator).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    rank = accelerator.process_index if accelerator is not None else 0
    rngs = state.get("rng") or []
    # A run resumed on a different number of processes keeps its seeded RNGs for the extra ranks.
    if rank < len(rngs):
        set_rng_state(rngs[rank]["rng"])
        if generator is not None and rngs[rank].get("generator") is not None:
            generator.set_state(rngs[rank]["generator"])
    return {"step": int(state["step"]), "extra": dict(state.get("extra") or {})}
