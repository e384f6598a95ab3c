"""Worked examples for every branch of the WebShop purchase score."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webshop_env.catalog import Catalog
from webshop_env.goals import make_goals
from webshop_env.reward import (
    attribute_matches,
    heuristic_nouns,
    normalize_color,
    option_matches,
    score_purchase,
    title_nouns,
    type_match,
)
from webshop_env.schema import Goal, Product


def product(**kw: object) -> Product:
    base = dict(
        asin="B000000001", title="Trail Hiking Boots", category="fashion",
        product_category="Clothing › Men › Shoes › Boots", query="hiking boots",
        description="Rugged boots with a dishwasher safe insole.", bullet_points=["Grippy sole", "Warm lining"],
        price=25.0, pricing=[25.0], price_text="$25.0", options={"color": ["navy blue"], "size": ["large"]},
        attributes=["gluten-free", "long lasting wear"], rating=4.5, reviews=[], image_url="",
    )
    base.update(kw)
    return Product(**base)  # type: ignore[arg-type]


def goal(**kw: object) -> Goal:
    base = dict(
        asin="B000000001", instruction_text="i need hiking boots", query="hiking boots", category="fashion",
        product_category="Clothing › Men › Shoes › Boots", product_title="Trail Hiking Boots",
        attributes=["gluten free"], goal_options={"color": "blue"}, price_upper=30.0, weight=1.0,
    )
    base.update(kw)
    return Goal(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- r_type steps
def test_title_nouns_fallback_drops_adjectives_numbers_and_units() -> None:
    assert heuristic_nouns("Acme Premium Waterproof Hiking Boots, 2 Pack") == ["acme", "hiking", "boots"]
    assert title_nouns("Acme Premium Waterproof Hiking Boots, 2 Pack") == ["acme", "hiking", "boots"]


def test_r_type_one_by_title_overlap() -> None:
    # goal nouns acme/hiking/boots, 2 of 3 shared -> 0.67 > 0.2; query and category differ.
    t = type_match(goal(product_title="Acme Hiking Boots", query="other", product_category="X › Y"),
                   product(title="Trail Hiking Boots"))
    assert (t.r_type, t.query_match, t.category_match) == (1.0, False, False)
    assert t.title_score == pytest.approx(2 / 3)


def test_r_type_half_when_weak_title_and_no_query_or_category_match() -> None:
    # 5 goal nouns, 1 shared -> title score 0.2 (not > 0.2), no query/category match -> 0.5
    g = goal(product_title="Boots Alpha Beta Gamma Delta", query="other", product_category="X › Y")
    t = type_match(g, product(title="Trail Hiking Boots"))
    assert t.title_score == pytest.approx(0.2)
    assert t.r_type == 0.5


@pytest.mark.parametrize("field, value", [("query", "hiking boots"),
                                          ("product_category", "Clothing › Men › Sandals")])
def test_r_type_one_by_query_or_category_match_with_weak_title(field: str, value: str) -> None:
    g = goal(product_title="Boots Alpha Beta Gamma Delta", query="other", product_category="X › Y")
    t = type_match(dataclasses.replace(g, **{field: value}), product(title="Trail Hiking Boots"))
    assert t.r_type == 1.0


def test_r_type_tenth_when_title_score_below_point_one() -> None:
    g = goal(product_title="Boots " + " ".join(f"word{c}" for c in "abcdefghij"))  # 11 nouns, 1 shared
    t = type_match(g, product(title="Trail Hiking Boots"))
    assert t.title_score == pytest.approx(1 / 11)
    assert t.r_type == 0.1  # even with a query and category match


def test_r_type_zero_without_a_shared_noun() -> None:
    t = type_match(goal(product_title="Coffee Table"), product(title="Trail Hiking Boots"))
    assert (t.title_score, t.r_type) == (0.0, 0.0)
    assert t.query_match  # query match does not rescue a zero title score, as in WebShop


def test_goal_title_without_nouns_scores_point_two() -> None:
    t = type_match(goal(product_title="Premium Black 2 Pack", query="other", product_category="X"),
                   product())
    assert (t.title_score, t.r_type) == (0.2, 0.5)


# ------------------------------------------------------------------------------ attributes
def test_attribute_by_fuzzy_match_against_product_attributes() -> None:
    assert attribute_matches(["gluten free"], product()) == 1  # "gluten-free": ratio 100
    assert attribute_matches(["long lasting"], product()) == 1  # token subset: ratio 100


def test_attribute_by_substring_of_text() -> None:
    p = product()
    assert attribute_matches(["dishwasher safe"], p) == 1  # description
    assert attribute_matches(["grippy sole"], p) == 1  # bullet points
    assert attribute_matches(["trail hiking"], p) == 1  # title


def test_attribute_no_match() -> None:
    assert attribute_matches(["easy clean"], product(attributes=["easy install"])) == 0  # ratio 57


# ---------------------------------------------------------------------------------- options
def test_normalize_color_takes_first_colour_of_the_alphabetical_set() -> None:
    assert normalize_color("navy blue") == "blue"
    assert normalize_color("royal blue") == "blue"
    assert normalize_color("black forest") == "black"
    assert normalize_color("dark red") == "dark"
    assert normalize_color("x-large") == "x-large"


def test_option_match_after_colour_normalisation() -> None:
    p = product(title="Boots", description="", bullet_points=[""])
    assert option_matches(["navy blue"], p, {"color": "royal blue"}) == 1  # both -> "blue"
    assert option_matches(["red"], p, {"color": "navy blue"}) == 0


def test_size_is_matched_exactly_not_fuzzily() -> None:
    p = product(title="Boots", description="", bullet_points=[""])
    assert option_matches(["large"], p, {"size": "large"}) == 1
    assert option_matches(["large"], p, {"size": "x-large"}) == 0  # fuzzy would say 100
    assert option_matches(["large"], p, {"fit": "x-large"}) == 1  # other names: fuzzy


def test_option_by_substring_of_product_text() -> None:
    p = product(title="Boots with case")
    assert option_matches(["bundle"], p, {"style": "with case"}) == 1


def test_option_matches_capped_at_goal_options() -> None:
    p = product(title="Boots", description="", bullet_points=[""])
    assert option_matches(["black"], p, {"color": "black", "style": "black edition"}) == 1


# --------------------------------------------------------------------------- price + total
def test_price_under_and_over_the_ceiling() -> None:
    g = goal()
    assert score_purchase(g, product(price=25.0), {"color": "navy blue"}).r_price is True
    assert score_purchase(g, product(price=35.0), {"color": "navy blue"}).r_price is False
    assert score_purchase(g, product(price=25.0), {"color": "navy blue"}, price=30.01).r_price is False
    assert score_purchase(g, product(price=35.0), {"color": "navy blue"}, price=30.0).r_price is True


def test_total_worked_example() -> None:
    # 2 attributes (1 matched), 1 option (matched), price under: (1 + 1 + 1) / (2 + 1 + 1) * 1.0
    g = goal(attributes=["gluten free", "easy clean"], goal_options={"color": "blue"})
    r = score_purchase(g, product(), {"color": "navy blue"})
    assert (r.num_attr_matches, r.num_option_matches, r.r_price, r.r_type) == (1, 1, True, 1.0)
    assert r.total == pytest.approx(0.75)
    assert (r.r_att, r.r_option) == (0.5, 1.0)
    # same purchase with a weak type match is halved
    weak = dataclasses.replace(g, product_title="Boots Alpha Beta Gamma Delta", query="q", product_category="Z")
    assert score_purchase(weak, product(), {"color": "navy blue"}).total == pytest.approx(0.375)
    d = r.to_dict()
    assert set(d) >= {"r_type", "r_att", "r_option", "r_price", "num_attr_matches", "num_option_matches", "total"}


def test_goal_without_options_or_attributes() -> None:
    r = score_purchase(goal(attributes=[], goal_options={}), product(), {})
    assert (r.r_att, r.r_option, r.total) == (None, None, 1.0)


def test_source_product_scores_one_for_every_synthetic_goal() -> None:
    catalog = Catalog.synthetic(150, seed=3)
    goals = make_goals(catalog, seed=3)
    assert goals
    for g in goals:
        assert score_purchase(g, catalog[g.asin], g.goal_options).total == 1.0


def test_wrong_option_or_product_scores_below_one() -> None:
    catalog = Catalog.synthetic(150, seed=3)
    g = next(g for g in make_goals(catalog, seed=3) if "color" in g.goal_options)
    p = catalog[g.asin]
    other = next(v for v in p.options["color"] if normalize_color(v) != normalize_color(g.goal_options["color"]))
    wrong = {**g.goal_options, "color": other}
    assert score_purchase(g, p, wrong).total < 1.0
    unrelated = next(q for q in catalog if q.category != p.category)
    assert score_purchase(g, unrelated, {}).total < 0.5


@settings(max_examples=150, deadline=None)
@given(title=st.text(max_size=60), attrs=st.lists(st.text(max_size=20), max_size=4),
       options=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3),
       selected=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=4),
       price=st.floats(min_value=0, max_value=1e6))
def test_score_is_always_between_zero_and_one(title: str, attrs: list[str], options: dict[str, str],
                                             selected: dict[str, str], price: float) -> None:
    g = goal(product_title=title, attributes=attrs, goal_options=options)
    r = score_purchase(g, product(), selected, price=price)
    assert 0.0 <= r.total <= 1.0
