"""A self-contained WebShop simulator (no Java, no torch).

Importing the package registers ``webshop_env/WebShop-v0`` (in-process) and
``webshop_env/WebShopBrowser-v0`` (the same site driven by headless Chromium).
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    "webshop_env/WebShop-v0": "webshop_env.env:WebShopEnv",
    "webshop_env/WebShopBrowser-v0": "webshop_env.browser_env:WebShopBrowserEnv",
}

for _id, _entry in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)
