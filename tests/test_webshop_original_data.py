"""The original WebShop data files, end to end: loader, goals, search, pages and reward.

A hand-made catalog in the shapes of WebShop's ``items_shuffle.json`` (product records with
the scrape's extra keys), ``items_ins_v2.json`` (attributes and instructions by asin) and
``items_human_ins.json`` (crowd instructions by asin, options as a bare list) is played
through ``WebShopEnv``; each purchase's reward is worked out by hand from WebShop's rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webshop_env.env import WebShopEnv

ESSENTIAL_OILS = "Beauty & Personal Care › Fragrance › Aromatherapy › Essential Oils"


def option(value: str, image: str | None = None) -> dict[str, Any]:
    return {"value": value, "image": image}


def item(asin: str, name: str, pricing: str, options: dict[str, list[dict[str, Any]]], **kw: Any) -> dict[str, Any]:
    """A product record as in items_shuffle.json (keys WebShop drops included)."""
    record = {
        "asin": asin, "name": name, "category": "beauty", "query": "Essential Oils ",
        "product_category": ESSENTIAL_OILS, "full_description": "", "small_description": [],
        "pricing": pricing, "list_price": "", "availability_status": "In Stock.", "brand": "Acme",
        "brand_url": "https://example.invalid/acme", "product_information": {"Item Weight": "4 ounces"},
        "customization_options": options, "images": [f"https://example.invalid/{asin}.jpg"],
        "total_reviews": 12, "seller_id": "S1", "fulfilled_by_amazon": True,
    }
    record.update(kw)
    return record


@pytest.fixture
def original_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("WEBSHOP_CACHE_DIR", str(tmp_path / "cache"))
    sizes = [option("1 Fl Oz (Pack of 1)"), option("4 Fl Oz (Pack of 1)")]
    products = [
        item("B0ORIG0001", "Lavender Essential Oil for Diffuser, Therapeutic Grade Aromatherapy Oil", "$12.99",
             {"Size": sizes, "Scent": [option("Lavender", "l.jpg"), option("Peppermint/Eucalyptus", "p.jpg")]},
             small_description=["Pure lavender oil", "For diffusers and massage"],
             full_description="Steam distilled lavender oil."),
        item("B0ORIG0002", "Peppermint Essential Oil for Diffuser, Aromatherapy Oil", "$8.99",
             {"Size": [option("2 Fl Oz (Pack of 1)")], "Scent": [option("Peppermint")]},
             small_description="Cooling peppermint oil", full_description="Organic peppermint."),
        item("B0ORIG0003", "Bamboo Bath Mat, Non Slip", "$19.99 - $29.99", {},
             category="furniture", query="bath mats", product_category="Home & Kitchen › Bath › Bath Rugs"),
    ]
    attributes = {
        "B0ORIG0001": {"attributes": ["therapeutic grade", "essential oil"],
                       "instruction": "i need a therapeutic grade essential oil for my diffuser",
                       "instruction_attributes": ["therapeutic grade"]},
        "B0ORIG0002": {"attributes": ["organic"], "instruction": None, "instruction_attributes": []},
        "B0ORIG0003": {"attributes": ["non slip"], "instruction": "i want a non slip bath mat",
                       "instruction_attributes": ["non slip"]},
    }
    human = {"B0ORIG0001": [{
        "asin": "B0ORIG0001", "assignment_id": "3X", "worker_id": "A1",
        "instruction": "i am looking for a therapeutic grade lavender essential oil in 4 fl oz (pack of 1).",
        "instruction_attributes": ["therapeutic grade"],
        "instruction_options": ["4 fl oz (pack of 1)", "lavender"],
    }]}
    paths = {}
    for key, name, data in (("catalog_path", "items_shuffle_3.json", products),
                            ("attributes_path", "items_ins_v2_3.json", attributes),
                            ("human_goals_path", "items_human_ins.json", human)):
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
        paths[key] = str(tmp_path / name)
    return paths


def play(env: WebShopEnv, goal_index: int, actions: list[str]) -> tuple[float, dict[str, Any]]:
    obs, _ = env.reset(options={"goal_index": goal_index})
    assert env.goal.instruction_text in obs
    for action in actions:
        _, reward, done, _, info = env.step(action)
        assert info["valid"], info["message"]
    assert done
    return reward, info


def test_human_goal_from_original_files(original_files: dict[str, str]) -> None:
    env = WebShopEnv(human_goals=True, **original_files)
    (g,) = env.site.goals  # one crowd instruction
    assert g.instruction_text.startswith("i am looking for a therapeutic grade lavender essential oil in 4 fl oz")
    assert g.option_values_only and list(g.goal_options.values()) == ["4 fl oz (pack of 1)", "lavender"]
    # Another product of the same query: no goal attribute ('organic' only), options compared as values:
    # '2 fl oz (pack of 1)' vs '4 fl oz (pack of 1)' is 94 (> 85), 'peppermint' vs 'lavender' 0;
    # price 8.99 under the ceiling; same query -> r_type 1. (0 + 1 + 1) / (1 + 2 + 1) = 0.5.
    reward, info = play(env, 0, ["search[lavender essential oil]", "click[b0orig0002]", "click[2 fl oz (pack of 1)]",
                                 "click[peppermint]", "click[buy now]"])
    b = info["reward_breakdown"]
    assert reward == 0.5
    assert (b["r_att"], b["r_option"], b["r_price"], b["r_type"], b["query_match"]) == (0.0, 0.5, True, 1.0, True)
    assert info["purchased_options"] == {"size": "2 fl oz (pack of 1)", "scent": "peppermint"}


def test_synthetic_goals_from_original_files(original_files: dict[str, str]) -> None:
    env = WebShopEnv(**original_files)
    goals = env.site.goals
    # B0ORIG0001: 2 sizes x 2 scents; B0ORIG0002 has no instruction; B0ORIG0003 no options.
    assert sorted((g.asin, tuple(sorted(g.goal_options.items()))) for g in goals) == sorted(
        [("B0ORIG0001", (("scent", s), ("size", z))) for s in ("lavender", "peppermint | eucalyptus")
         for z in ("1 fl oz (pack of 1)", "4 fl oz (pack of 1)")] + [("B0ORIG0003", ())])
    index = next(i for i, g in enumerate(goals)
                 if g.goal_options == {"scent": "lavender", "size": "4 fl oz (pack of 1)"})
    # Named options are compared as (name, value) text: bought '1 fl oz (pack of 1)' is a token subset
    # of 'size 4 fl oz pack of 1' (100); bought 'peppermint | eucalyptus' normalises to 'mint', which
    # misses 'lavender'. Attribute 'therapeutic grade' is a product attribute. (1 + 1 + 1) / 4 = 0.75.
    reward, info = play(env, index, ["search[therapeutic grade essential oil]", "click[b0orig0001]",
                                     "click[1 fl oz (pack of 1)]", "click[peppermint | eucalyptus]",
                                     "click[buy now]"])
    assert reward == 0.75
    b = info["reward_breakdown"]
    assert (b["num_attr_matches"], b["num_option_matches"], b["r_price"], b["r_type"]) == (1, 1, True, 1.0)
    # The same purchase scored by the corrected variant: 'mint' still misses, the size still matches.
    corrected = WebShopEnv(reward_variant="corrected", **original_files)
    assert play(corrected, index, ["search[therapeutic grade essential oil]", "click[b0orig0001]",
                                   "click[1 fl oz (pack of 1)]", "click[peppermint | eucalyptus]",
                                   "click[buy now]"])[0] == 0.75


def test_goal_without_options_from_original_files(original_files: dict[str, str]) -> None:
    env = WebShopEnv(**original_files)
    index = next(i for i, g in enumerate(env.site.goals) if g.asin == "B0ORIG0003")
    # The mat for the mat goal: 1 attribute ('non slip' is a product attribute), no options, price in range.
    reward, info = play(env, index, ["search[non slip bath mat]", "click[b0orig0003]", "click[buy now]"])
    assert reward == 1.0 and "r_option" not in info["reward_breakdown"]
