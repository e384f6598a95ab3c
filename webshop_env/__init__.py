"""A self-contained WebShop simulator (no Java, no torch).

Public names are imported lazily (PEP 562), so ``import webshop_env`` stays cheap: bm25s,
numpy and rapidfuzz load only when the search engine or the reward is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> defining module.
_EXPORTS = {
    "Product": "webshop_env.schema",
    "Goal": "webshop_env.schema",
    "Catalog": "webshop_env.catalog",
    "CatalogError": "webshop_env.catalog",
    "generate_product": "webshop_env.synthetic",
    "make_goals": "webshop_env.goals",
    "split_goals": "webshop_env.goals",
    "SearchEngine": "webshop_env.search",
    "product_document": "webshop_env.search",
    "SEARCH_RETURN_N": "webshop_env.search",
    "score_purchase": "webshop_env.reward",
    "RewardBreakdown": "webshop_env.reward",
    "normalize_color": "webshop_env.reward",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webshop_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
