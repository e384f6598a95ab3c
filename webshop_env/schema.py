"""Records of the WebShop simulator: a catalog :class:`Product` and a shopping :class:`Goal`.

Field names follow the derived fields of the original WebShop engine (``Title`` -> ``title``,
``BulletPoints`` -> ``bullet_points``, ``Attributes`` -> ``attributes``, ...), in snake case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Product:
    """One catalog item with the fields the WebShop pages, search index and reward read.

    ``pricing`` is one price or a ``[low, high]`` range; ``price`` is the representative price a
    purchase costs (the single price, or a seeded draw inside the range as WebShop does).
    ``options`` maps a lower-cased option name (``"color"``, ``"size"``) to its values.
    ``instruction_text`` / ``instruction_attributes`` are the synthetic-goal seeds from the
    attributes file (or the synthetic generator); ``human_instructions`` the crowd-written ones.
    """

    asin: str
    title: str
    category: str
    product_category: str
    query: str
    description: str
    bullet_points: list[str]
    price: float
    pricing: list[float]
    price_text: str
    options: dict[str, list[str]]
    attributes: list[str]
    rating: float | str
    reviews: list[dict[str, Any]]
    image_url: str
    option_to_image: dict[str, str | None] = field(default_factory=dict)
    instruction_text: str | None = None
    instruction_attributes: list[str] = field(default_factory=list)
    human_instructions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field."""
        return asdict(self)


@dataclass
class Goal:
    """One shopping task: the instruction an agent reads and what the reward checks.

    ``goal_options`` maps option name to the wanted value. A human instruction file may list
    the values without names: they are then kept under positional names (``option 1``, ...) and
    ``option_values_only`` is set, because WebShop's reward compares such bare values, but
    ``(name, value)`` pairs for named options. ``price_upper`` is the price ceiling (1e6 when
    the goal states none); ``weight`` is WebShop's attribute-rarity weight.
    """

    asin: str
    instruction_text: str
    query: str
    category: str
    product_category: str
    product_title: str
    attributes: list[str]
    goal_options: dict[str, str]
    price_upper: float
    weight: float
    option_values_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field."""
        return asdict(self)
