"""A self-contained WebShop simulator (no Java, no torch).

Importing the package registers ``webshop_env/WebShop-v0`` (in-process) and
``webshop_env/WebShopBrowser-v0`` (the same site driven by headless Chromium).

Public names are imported lazily (PEP 562), so ``import webshop_env`` stays cheap: bm25s,
numpy, rapidfuzz and spaCy load only when the search engine or the reward is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from gymnasium.envs.registration import register, registry

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
    "WebShopEnv": "webshop_env.env",
    "WebShopBrowserEnv": "webshop_env.browser_env",
    "WebShopServer": "webshop_env.server",
    "Site": "webshop_env.site",
    "SiteConfig": "webshop_env.site",
}

__all__ = sorted(_EXPORTS)

# Gymnasium ids -> entry points (registered on import; the modules load on make()).
_ENVS = {
    "webshop_env/WebShop-v0": "webshop_env.env:WebShopEnv",
    "webshop_env/WebShopBrowser-v0": "webshop_env.browser_env:WebShopBrowserEnv",
}

for _id, _entry in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webshop_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
