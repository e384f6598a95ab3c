"""Deterministic train/test splits of a question list."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .schema import QAItem


def split_train_test(
    items: Sequence[QAItem], seed: int | Sequence[int], test_fraction: float = 0.1
) -> dict[str, list[QAItem]]:
    """Split ``items`` into disjoint ``train`` and ``test`` lists, the same for the same seed.

    ``test`` gets ``round(test_fraction * len(items))`` questions (at least one
    when there are two or more); both lists keep the input order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = max(1, round(test_fraction * len(items))) if len(items) > 1 else 0
    in_test = np.zeros(len(items), dtype=bool)
    in_test[order[:n_test]] = True
    return {
        "train": [it for it, t in zip(items, in_test.tolist()) if not t],
        "test": [it for it, t in zip(items, in_test.tolist()) if t],
    }
