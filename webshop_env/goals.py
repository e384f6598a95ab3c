"""Shopping goals built as WebShop builds them, and the usual test/eval/train split.

Synthetic goals: for every product with an instruction and instruction attributes, one goal
per combination of its option values (cartesian product over option names in sorted order),
with the instruction ``"<instruction> with <name>: <value>, and ..., and price lower than <X>
dollars"``. The price ceiling ``X`` is drawn once per product: two of the first four multiples
of $10 above the product's price, keeping the larger (no ceiling when fewer than two exist).
Each goal is weighted by the mean inverse frequency of its attributes among all goals, so rare
attributes weigh more. Human goals (``items_human_ins.json``) take the crowd-written
instruction, its attributes and options, weight 1. Draws are keyed by ``(seed, asin)``, so
every process builds the same goals in any order.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

from webshop_env.catalog import Catalog
from webshop_env.schema import Goal, Product
from webshop_env.seeding import stable_rng

#: The $10 steps WebShop draws price ceilings from.
PRICE_STEPS = tuple(10.0 * i for i in range(1, 100))
#: ``price_upper`` of a goal that states no price.
NO_PRICE_LIMIT = 1_000_000.0
#: Sizes of the first two splits (test = goals[0:500], eval = goals[500:1500], train = the rest).
TEST_SIZE, EVAL_SIZE = 500, 1000
#: WebShop's shuffle seed for the goal split.
SPLIT_SEED = 233


def price_ceiling(product: Product, seed: int) -> float | None:
    """The goal price ceiling for ``product`` (``None``: the goal states no price)."""
    steps = [p for p in PRICE_STEPS if p > product.price][:4]
    if len(steps) < 2:
        return None
    return max(stable_rng("webshop-goal-price", seed, product.asin).sample(steps, 2))


def _price_clause(ceiling: float | None) -> tuple[float, str]:
    if ceiling is None:
        return NO_PRICE_LIMIT, ""
    return ceiling, f", and price lower than {ceiling:.2f} dollars"


def _product_goals(product: Product, seed: int) -> list[Goal]:
    upper, price_text = _price_clause(price_ceiling(product, seed))
    names = sorted(product.options)
    goals = []
    for combination in itertools.product(*(product.options[n] for n in names)):
        goal_options = dict(zip(names, combination))
        option_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
        option_text = f" with {option_text}" if option_text else ""
        goals.append(Goal(
            asin=product.asin,
            instruction_text=f"{product.instruction_text}{option_text}{price_text}",
            query=product.query,
            category=product.category,
            product_category=product.product_category,
            product_title=product.title,
            attributes=list(product.instruction_attributes),
            goal_options=goal_options,
            price_upper=upper,
            weight=1.0,
        ))
    return goals


def _human_goals(product: Product, seed: int) -> list[Goal]:
    upper, price_text = _price_clause(price_ceiling(product, seed))
    goals = []
    for entry in product.human_instructions:
        attributes = list(entry.get("instruction_attributes") or [])
        if not attributes:
            continue  # WebShop skips instructions without attributes
        raw_options = entry.get("instruction_options") or {}
        if isinstance(raw_options, dict):
            goal_options = {str(k): str(v) for k, v in raw_options.items()}
        else:  # a bare list of values: positional names, and the reward compares values only
            goal_options = {f"option {i + 1}": str(v) for i, v in enumerate(raw_options)}
        goals.append(Goal(
            asin=product.asin,
            instruction_text=entry["instruction"].strip(".") + price_text,
            query=product.query,
            category=product.category,
            product_category=product.product_category,
            product_title=product.title,
            attributes=attributes,
            goal_options=goal_options,
            price_upper=upper,
            weight=1.0,
            option_values_only=not isinstance(raw_options, dict),
        ))
    return goals


def make_goals(catalog: Catalog, seed: int = 0, human: bool = False) -> list[Goal]:
    """All goals of ``catalog`` in catalog order (see the module docstring).

    ``human=True`` needs a catalog loaded with ``human_instructions_path`` and raises
    ``ValueError`` otherwise. Goals are materialised: a catalog of N products with up to 16
    option combinations each yields up to 16N goals.
    """
    goals: list[Goal] = []
    if human:
        for product in catalog:
            goals.extend(_human_goals(product, seed))
        if not goals:
            raise ValueError(f"catalog {catalog.name!r} has no human instructions (load it with "
                             "human_instructions_path=... items_human_ins.json)")
        return goals
    for product in catalog:
        if product.instruction_text and product.instruction_attributes:
            goals.extend(_product_goals(product, seed))
    counts = Counter(att for g in goals for att in g.attributes)
    for g in goals:
        g.weight = sum(1.0 / counts[a] for a in g.attributes) / len(g.attributes)
    return goals


def split_goals(goals: Sequence[Goal], seed: int = SPLIT_SEED) -> dict[str, list[Goal]]:
    """``{"test": [0:500], "eval": [500:1500], "train": [1500:]}`` of a seeded shuffle of ``goals``.

    With the default seed the permutation equals WebShop's ``random.seed(233); random.shuffle``.
    """
    shuffled = list(goals)
    random.Random(seed).shuffle(shuffled)
    return {
        "test": shuffled[:TEST_SIZE],
        "eval": shuffled[TEST_SIZE:TEST_SIZE + EVAL_SIZE],
        "train": shuffled[TEST_SIZE + EVAL_SIZE:],
    }
