"""The WebShop purchase score: type, attribute, option and price match, as WebShop defines it.

    total = (attribute matches + option matches + price match)
            / (#goal attributes + #goal options + 1) * r_type

* **r_type** — query match (same search query), category match (at least two shared levels of
  the `` › ``-joined category path) and title score (share of the goal title's nouns found in
  the bought title's nouns) give 1.0; no query/category match and title score <= 0.2 gives 0.5;
  title score < 0.1 gives 0.1; no shared noun gives 0.0.
* **attributes** — a goal attribute matches when some product attribute has a token-set ratio
  > 85 with it, else when it is a substring of the title, bullet points or description.
* **options** — each selected option value, colour-normalised, matches a goal option value:
  exactly for ``size``, by token-set ratio > 85 otherwise, else as a substring of the title,
  bullet points or description.
* **price** — the price paid is at most the goal's ``price_upper``.

Nouns come from spaCy (``en_core_web_lg`` or ``en_core_web_sm``) when it and a model are
installed, as in WebShop; otherwise from :func:`heuristic_nouns`, a POS-free rule documented
there. Fuzzy ratios use rapidfuzz with thefuzz's default processing (lower-case, non-alphanumerics
to spaces) and are rounded to integers as thefuzz reports them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Callable

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from webshop_env.schema import Goal, Product

#: Option names matched exactly rather than fuzzily.
EXACT_MATCH_OPTIONS = ("size",)
#: Score a fuzzy match must exceed.
FUZZY_THRESHOLD = 85

# WebShop's colour vocabulary. Normalisation returns the FIRST entry that is a substring of the
# value, and the list is alphabetical, so "navy blue" -> "blue", "black forest" -> "black" and a
# two-colour value takes the alphabetically first colour; "dark"/"light" are entries too.
COLOR_SET = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue", "blush",
    "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne", "charcoal", "cheetah",
    "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral", "cranberry", "cream", "crystal",
    "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite",
    "grass", "gray", "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink",
    "plum", "purple", "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver",
    "skull", "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise",
    "violet", "walnut", "wheat", "white", "wine", "yellow",
)

# Words the noun heuristic never counts: function words, units, and the adjectives product
# titles use most. A title word outside these lists (and not a number) counts as a noun.
_STOPWORDS = frozenset("""
a an the and or of for with without in on at to by from into over under up as is are be this that these
those it its your our my you we i me pack count set piece pieces pcs pc oz fl ounce ounces lb lbs pound
pounds inch inches in cm mm ml l g kg gb tb ft feet x per each one two three four five six
""".split())
_ADJECTIVES = frozenset("""
new premium professional portable large small mini big little soft hard heavy light lightweight durable
natural organic fresh classic modern vintage luxury deluxe best great good perfect ultra super extra high low
long short wide narrow thin thick slim full free easy quick fast slow compact adjustable universal original
black white red blue green yellow pink purple orange brown grey gray silver gold beige navy dark bright
clear waterproof wireless rechargeable stainless cotton leather wooden plastic metal glass non daily
men's women's mens womens kids unisex multi assorted hot cold warm cool real pure healthy
""".split())
_ADJ_SUFFIXES = ("able", "ible", "ful", "less", "ous", "ive")
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def normalize_color(value: str) -> str:
    """The first :data:`COLOR_SET` entry inside ``value``, or ``value`` unchanged."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def heuristic_nouns(title: str) -> list[str]:
    """Lower-cased words of ``title`` taken as nouns without a tagger.

    A word counts unless it is a stop word or unit, a common product adjective or colour, a
    number (no letters), or longer than five letters and ending in an adjective suffix
    (-able, -ible, -ful, -less, -ous, -ive). Brand names count, as spaCy tags them PROPN.
    """
    nouns = []
    for word in _WORD.findall(title.lower()):
        if word in _STOPWORDS or word in _ADJECTIVES or not any(c.isalpha() for c in word):
            continue
        if len(word) > 5 and word.endswith(_ADJ_SUFFIXES):
            continue
        nouns.append(word)
    return nouns


@functools.lru_cache(maxsize=1)
def _spacy_nouns() -> Callable[[str], list[str]] | None:
    """spaCy noun extraction if spaCy and an English model are installed, else ``None``."""
    try:
        import spacy  # optional; WebShop's own choice
    except ImportError:
        return None
    for model in ("en_core_web_lg", "en_core_web_sm"):
        try:
            nlp = spacy.load(model)
        except OSError:
            continue
        return lambda text: [t.text.lower() for t in nlp(text) if t.pos_ in ("NOUN", "PROPN")]
    return None


def title_nouns(title: str) -> list[str]:
    """The nouns of a title: spaCy's when available, else :func:`heuristic_nouns`."""
    tagger = _spacy_nouns()
    return tagger(title) if tagger is not None else heuristic_nouns(title)


def fuzzy_ratio(a: str, b: str) -> int:
    """Token-set ratio as thefuzz computes it (processed strings, integer result)."""
    return int(round(fuzz.token_set_ratio(a, b, processor=default_process)))


@dataclass(frozen=True)
class TypeMatch:
    """The pieces of the type reward."""

    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def type_match(goal: Goal, product: Product) -> TypeMatch:
    """WebShop's r_type: is the bought product the same kind of thing as the goal's?"""
    query_match = product.query == goal.query
    bought_path = {x.strip() for x in product.product_category.split("›")}
    goal_path = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought_path & goal_path) >= 2
    desired = title_nouns(goal.product_title)
    bought = set(title_nouns(product.title))
    title_score = 0.2 if not desired else len(set(desired) & bought) / len(desired)
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeMatch(r_type, query_match, category_match, title_score)


def _in_product_text(value: str, product: Product) -> bool:
    return (value in product.title.lower() or value in " ".join(product.bullet_points).lower()
            or value in product.description.lower())


def attribute_matches(goal_attributes: Iterable[str], product: Product) -> int:
    """How many goal attributes the product has (fuzzy against its attributes, else in its text)."""
    count = 0
    for wanted in goal_attributes:
        wanted = wanted.lower()
        if any(fuzzy_ratio(have, wanted) > FUZZY_THRESHOLD for have in product.attributes):
            count += 1
        elif _in_product_text(wanted, product):
            count += 1
    return count


def option_matches(goal_option_values: Iterable[str], product: Product, selected: Mapping[str, str]) -> int:
    """How many selected options match a goal option value (see the module docstring).

    Capped at the number of goal options: WebShop counts per selected option, so a product with
    more options than the goal names could otherwise score above 1.
    """
    wanted = [normalize_color(str(v).lower()) for v in goal_option_values]
    count = 0
    for name, value in selected.items():
        value = normalize_color(str(value).lower())
        if name.lower() in EXACT_MATCH_OPTIONS:
            matched = value in wanted
        else:
            matched = any(fuzzy_ratio(w, value) > FUZZY_THRESHOLD for w in wanted)
        if matched or _in_product_text(value, product):
            count += 1
    return min(count, len(wanted))


@dataclass(frozen=True)
class RewardBreakdown:
    """The purchase score and its parts (``r_att``/``r_option`` are ``None`` when the goal has none)."""

    r_type: float
    r_att: float | None
    r_option: float | None
    r_price: bool
    num_attr_matches: int
    num_option_matches: int
    total: float
    query_match: bool
    category_match: bool
    title_score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def score_purchase(goal: Goal, product: Product, selected_options: Mapping[str, str],
                   price: float | None = None) -> RewardBreakdown:
    """Score buying ``product`` with ``selected_options`` at ``price`` (default: its price) for ``goal``."""
    kind = type_match(goal, product)
    paid = product.price if price is None else float(price)
    r_price = paid <= goal.price_upper
    n_att = attribute_matches(goal.attributes, product)
    goal_values = list(goal.goal_options.values())
    n_opt = option_matches(goal_values, product, selected_options)
    denominator = len(goal.attributes) + len(goal_values) + 1
    total = (n_att + n_opt + int(r_price)) / denominator * kind.r_type
    return RewardBreakdown(
        r_type=kind.r_type,
        r_att=n_att / len(goal.attributes) if goal.attributes else None,
        r_option=n_opt / len(goal_values) if goal_values else None,
        r_price=r_price,
        num_attr_matches=n_att,
        num_option_matches=n_opt,
        total=total,
        query_match=kind.query_match,
        category_match=kind.category_match,
        title_score=kind.title_score,
    )
