"""The WebShop site: which page a route shows, for which goal.

:class:`Site` holds the catalog, the search engine and the goals, and renders
any :class:`~webshop_env.routes.Route` to HTML with :mod:`webshop_env.pages`.
It is shared: the in-process engine renders through it, and the HTTP server
answers requests with it (from many threads, so the search cache is locked).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

from . import pages
from .catalog import Catalog
from .goals import make_goals, split_goals
from .reward import REWARD_VARIANTS, score_purchase
from .routes import Route, RouteError
from .schema import Goal, Product
from .search import SearchEngine

#: Goal splits (WebShop: test = goals 0-499, eval = 500-1499, train = the rest).
GOAL_SPLITS = ("test", "eval", "train")
#: A session id ending in ``_<n>`` plays goal ``n`` of the split (WebShop's ``fixed_<n>``).
_GOAL_SUFFIX = re.compile(r"_(\d{1,9})$")


@dataclass
class RenderedPage:
    """A rendered page and, on the done page, the purchase's reward.

    Attributes:
        route: the page.
        html: its HTML.
        reward: the purchase reward (done page only).
        breakdown: the reward's parts (done page only).
    """

    route: Route
    html: str
    reward: float | None = None
    breakdown: dict[str, Any] | None = None


@dataclass(frozen=True)
class SiteConfig:
    """How to build a :class:`Site`.

    Attributes:
        num_products: size of the seeded synthetic catalog (when ``catalog_path`` is None).
        catalog_path: a WebShop product JSON file (``items_shuffle*.json``) to load instead.
        attributes_path: its ``items_ins_v2*.json`` attribute/instruction file, if any.
        human_goals_path: WebShop's ``items_human_ins.json``, if human goals are wanted.
        human_goals: use human-written instructions (needs ``human_goals_path``).
        goal_split: ``test``, ``eval`` or ``train``.
        catalog_seed: seeds the synthetic catalog and the goal generation.
        top_k: results kept per search (WebShop: 50).
        per_page: results per page (WebShop: 10).
        reward_variant: ``original`` (WebShop's reward code, quirks included) or ``corrected``
            (see :mod:`webshop_env.reward`).
    """

    num_products: int = 1000
    catalog_path: str | None = None
    attributes_path: str | None = None
    human_goals_path: str | None = None
    human_goals: bool = False
    goal_split: str = "test"
    catalog_seed: int = 0
    top_k: int = 50
    per_page: int = 10
    reward_variant: str = "original"


class Site:
    """Renders the pages of the WebShop site for a catalog and its goals.

    Args:
        catalog: the products.
        goals: the goals sessions play (one split).
        search_engine: defaults to a :class:`~webshop_env.search.SearchEngine` over ``catalog``.
        top_k: results kept per search.
        per_page: results per page.
        reward_variant: ``original`` (default) or ``corrected`` (see :mod:`webshop_env.reward`).
    """

    def __init__(
        self,
        catalog: Catalog,
        goals: Sequence[Goal],
        search_engine: SearchEngine | None = None,
        top_k: int = 50,
        per_page: int = 10,
        reward_variant: str = "original",
    ):
        if not goals:
            raise ValueError("a site needs at least one goal")
        if reward_variant not in REWARD_VARIANTS:
            raise ValueError(f"reward_variant must be one of {REWARD_VARIANTS}, got {reward_variant!r}")
        self.reward_variant = reward_variant
        self.catalog = catalog
        self.goals = list(goals)
        self.search_engine = search_engine or SearchEngine(catalog)
        self.top_k = int(top_k)
        self.per_page = int(per_page)
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()
        self._catalog_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: SiteConfig) -> "Site":
        """Build the catalog, goals and search engine that ``config`` describes."""
        if config.goal_split not in GOAL_SPLITS:
            raise ValueError(f"goal_split must be one of {GOAL_SPLITS}, got {config.goal_split!r}")
        if config.catalog_path is None:
            catalog = Catalog.synthetic(num_products=config.num_products, seed=config.catalog_seed)
        else:
            catalog = Catalog.load(
                config.catalog_path, attributes_path=config.attributes_path,
                human_instructions_path=config.human_goals_path,
            )
        goals = split_goals(make_goals(catalog, seed=config.catalog_seed, human=config.human_goals))[config.goal_split]
        if not goals:
            raise ValueError(f"the {config.goal_split!r} split has no goals for this catalog")
        return cls(catalog, goals, top_k=config.top_k, per_page=config.per_page,
                   reward_variant=config.reward_variant)

    # -- sessions -----------------------------------------------------------------

    def goal_index_for_session(self, session: str) -> int:
        """The goal a session plays: ``<name>_<n>`` plays goal ``n`` (modulo the split), others a hash."""
        m = _GOAL_SUFFIX.search(session)
        if m:
            return int(m.group(1)) % len(self.goals)
        digest = hashlib.sha256(session.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % len(self.goals)

    # -- catalog access -----------------------------------------------------------------

    def product(self, asin: str) -> Product:
        """The product ``asin``; :class:`RouteError` 404 when there is none."""
        # A synthetic catalog generates products into an LRU cache: not safe from many threads.
        with self._catalog_lock:
            product = self.catalog.get(asin)
        if product is None:
            raise RouteError(404, f"no product with id {asin[:40]!r}")
        return product

    def search(self, keywords: str) -> list[str]:
        """The top-k asins for ``keywords`` (cached; safe from many threads)."""
        key = " ".join(keywords.lower().split())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            # The search engine is not assumed thread-safe: queries run one at a time.
            asins = list(self.search_engine.search(key, top_k=self.top_k))[: self.top_k]
            self._cache[key] = asins
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
            return asins

    def last_page(self, keywords: str) -> int:
        """The number of results pages for ``keywords`` (at least 1)."""
        return max(1, -(-len(self.search(keywords)) // self.per_page))

    # -- rendering -------------------------------------------------------------------

    def render(self, route: Route, goal: Goal) -> RenderedPage:
        """Render ``route`` for a session playing ``goal``.

        Raises:
            RouteError: 404 for an unknown product, 400 for a results page past the last
                one or an option the product does not have.
        """
        text = goal.instruction_text
        if route.kind == "search":
            return RenderedPage(route, pages.render_search(route, text))
        if route.kind == "results":
            if not route.keywords:
                raise RouteError(400, "the search query is empty")
            asins = self.search(route.keywords)
            if route.page > self.last_page(route.keywords):
                raise RouteError(400, f"page {route.page} is past the last page ({self.last_page(route.keywords)})")
            start = (route.page - 1) * self.per_page
            shown = [self.product(a) for a in asins[start:start + self.per_page]]
            return RenderedPage(route, pages.render_results(route, text, shown, len(asins), self.per_page))
        product = self.product(route.asin)
        for name, value in route.options.items():
            if value not in (product.options or {}).get(name, ()):
                raise RouteError(400, f"the product has no option {name}={value!r}")
        if route.kind == "item":
            return RenderedPage(route, pages.render_item(route, text, product))
        if route.kind == "sub_page":
            return RenderedPage(route, pages.render_sub_page(route, text, product))
        result = score_purchase(goal, product, dict(route.options), variant=self.reward_variant)
        breakdown = result.to_dict()
        html = pages.render_done(route, text, product, result.total, breakdown)
        return RenderedPage(route, html, reward=float(result.total), breakdown=breakdown)


_SHARED: dict[SiteConfig, Site] = {}
_SHARED_LOCK = threading.Lock()


def shared_site(config: SiteConfig) -> Site:
    """The one :class:`Site` of this process for ``config`` (built on first use).

    Environments in one process share it, so a vector of envs builds the catalog and
    search index once; sites are read-only apart from their locked search cache.
    """
    with _SHARED_LOCK:
        site = _SHARED.get(config)
        if site is None:
            site = _SHARED[config] = Site.from_config(config)
        return site
