"""Optional Weights & Biases logging of ``mem1 train``, next to TensorBoard (off by default, never required).

Enable it with ``train.wandb: {project: my-project, ...}`` in the config (any ``wandb.init``
keyword: ``entity``, ``name``, ``tags``, ``mode: offline``, ...); ``train.wandb: null`` (the
default) never imports ``wandb``. Enabled without the package installed, the run stops before
training with a one-line error saying how to install it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import UserError


def start_wandb(settings: dict[str, Any] | None, config: dict[str, Any], output_dir: str) -> Any:
    """A W&B run for ``settings`` (``wandb.init`` keywords), or None when ``settings`` is None.

    The run's config is the whole training config; its files go under ``output_dir`` unless ``dir`` is given.
    """
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise UserError(f"train.wandb must be a mapping of wandb.init arguments or null, got {settings!r}")
    try:
        wandb = importlib.import_module("wandb")
    except ImportError:
        raise UserError("train.wandb is set but the 'wandb' package is not installed: pip install wandb, or set train.wandb=null") from None
    return wandb.init(**{"dir": output_dir, "config": config, **settings})
