"""Catalog loading (original WebShop format), synthetic generation, goals and splits."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from webshop_env.catalog import Catalog, CatalogError
from webshop_env.goals import NO_PRICE_LIMIT, make_goals, price_ceiling, split_goals
from webshop_env.synthetic import CATEGORIES


def record(asin: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "asin": asin, "name": f"Acme Widget {asin}", "category": "beauty", "query": " Face Cream ",
        "product_category": "Beauty › Skin Care › Face", "full_description": "A fine cream.",
        "small_description": ["Smooth", "Rich"], "pricing": "$12.99",
        "customization_options": {"Color": [{"value": "Navy/Blue", "image": "u1"}, {"value": " Red ", "image": None}]},
        "images": ["img0", "img1"],
    }
    base.update(kw)
    return base


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    records = [
        record("B00000000A"),
        record("nan"),  # dropped: no asin
        record("B0000000000X"),  # dropped: longer than 10
        record("B00000000A", name="duplicate"),  # dropped: repeated asin
        record("B00000000B", pricing="$10.99 - $20.99", small_description="One bullet",
               Reviews=[{"title": "ok", "stars": 4, "review": "fine"}], Rating=4.2),
        record("B00000000C", pricing=None, customization_options=None, images=[]),
    ]
    attrs = {"B00000000A": {"attributes": ["long lasting"], "instruction": "i need a long lasting face cream",
                            "instruction_attributes": ["long lasting"]}}
    human = {"B00000000A": [{"instruction": "i want a long lasting cream.", "instruction_attributes": ["long lasting"],
                             "instruction_options": ["navy | blue"]},
                            {"instruction": "no attributes here", "instruction_attributes": []}]}
    return {"products": write(tmp_path / "items.json", records), "attrs": write(tmp_path / "attrs.json", attrs),
            "human": write(tmp_path / "human.json", human)}


def test_load_derives_webshop_fields_and_filters_records(files: dict[str, Path]) -> None:
    c = Catalog.load(files["products"], files["attrs"], files["human"])
    assert list(c.asins) == ["B00000000A", "B00000000B", "B00000000C"]
    a, b, cc = c["B00000000A"], c["B00000000B"], c["B00000000C"]
    assert a.title == "Acme Widget B00000000A" and a.query == "face cream"
    assert a.options == {"color": ["navy | blue", "red"]}
    assert a.option_to_image == {"navy | blue": "u1", "red": None}
    assert (a.pricing, a.price, a.price_text) == ([12.99], 12.99, "$12.99")
    assert a.attributes == ["long lasting"] and a.instruction_attributes == ["long lasting"]
    assert a.image_url == "img0" and a.bullet_points == ["Smooth", "Rich"]
    assert len(a.human_instructions) == 2
    assert b.pricing == [10.99, 20.99] and b.price_text == "$10.99 to $20.99"
    assert 10.99 <= b.price <= 20.99 and b.price == Catalog.load(files["products"])["B00000000B"].price
    assert b.bullet_points == ["One bullet"] and b.attributes == []
    assert b.reviews == [{"title": "ok", "score": 4, "body": "fine"}] and b.rating == 4.2
    assert (cc.pricing, cc.price, cc.price_text, cc.options, cc.image_url) == ([100.0], 100.0, "$100.0", {}, "")


def test_load_limit_and_fingerprint(files: dict[str, Path]) -> None:
    assert list(Catalog.load(files["products"], limit=1).asins) == ["B00000000A"]
    assert Catalog.load(files["products"]).fingerprint == Catalog.load(files["products"]).fingerprint
    assert Catalog.load(files["products"]).fingerprint != Catalog.load(files["products"], files["attrs"]).fingerprint


@pytest.mark.parametrize("content, expected", [
    ("[{\"asin\": \"B1\",", "invalid JSON at line 1"),
    ("{}", "expected a JSON list"),
    ("[1]", "(record 0): a product record must be an object"),
    ("[{\"asin\": \"B1\", \"name\": \"x\"}, {\"asin\": \"B2\"}]", "(record 1): missing field 'name'"),
    ("[{\"asin\": \"B1\", \"name\": 5}]", "(record 0): field 'name' must be a string"),
    ("[{\"asin\": \"B1\", \"name\": \"x\", \"customization_options\": {\"c\": [{\"image\": 1}]}}]",
     "(record 0): option 'c' has an entry without a string 'value'"),
    ("[{\"asin\": \"B1\", \"name\": \"x\", \"pricing\": {\"a\": 1}}]", "(record 0): field 'pricing' must be a string"),
    ("[{\"asin\": \"B1\", \"name\": \"x\", \"images\": \"u\"}]", "(record 0): field 'images' must be a list"),
])
def test_corrupt_products_file_raises_one_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        Catalog.load(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_corrupt_side_files_and_missing_file(tmp_path: Path, files: dict[str, Path]) -> None:
    bad_attrs = write(tmp_path / "a.json", {"B00000000A": ["not", "an", "object"]})
    with pytest.raises(CatalogError, match=r"a\.json \(record B00000000A\): an attributes entry must be an object"):
        Catalog.load(files["products"], bad_attrs)
    with pytest.raises(CatalogError, match=r"a2\.json \(record B00000000A\): 'attributes' must be a list"):
        Catalog.load(files["products"], write(tmp_path / "a2.json", {"B00000000A": {"attributes": "long lasting"}}))
    bad_human = write(tmp_path / "h.json", {"B00000000A": [{"instruction_attributes": []}]})
    with pytest.raises(CatalogError, match=r"h\.json \(record B00000000A\).*'instruction'"):
        Catalog.load(files["products"], human_instructions_path=bad_human)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe[")
    with pytest.raises(CatalogError, match="not UTF-8"):
        Catalog.load(tmp_path / "bin.json")
    with pytest.raises(CatalogError, match="cannot read file"):
        Catalog.load(tmp_path / "missing.json")


def test_synthetic_is_deterministic_lazy_and_seed_sensitive() -> None:
    a, b = Catalog.synthetic(300, seed=7), Catalog.synthetic(300, seed=7)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert [p.title for p in a] != [p.title for p in Catalog.synthetic(300, seed=8)]
    assert a.at(123) == list(a)[123] and a[a.asins[5]].asin == a.asins[5]
    assert {p.category for p in a} == set(CATEGORIES)
    for p in a:
        assert " › " in p.product_category and p.bullet_points and p.attributes and p.title
        assert len(p.pricing) in (1, 2) and p.pricing[0] <= p.price <= p.pricing[-1]
        assert set(p.instruction_attributes) <= set(p.attributes)
    big = Catalog.synthetic(1_000_000, seed=0)
    assert len(big) == 1_000_000 and big.asins[-1] in big
    assert big.at(999_999).asin == big.asins[999_999] and "S001000000" not in big and "nope" not in big
    with pytest.raises(KeyError):
        big["S001000000"]


def test_save_then_load_reproduces_the_catalog(tmp_path: Path) -> None:
    c = Catalog.synthetic(60, seed=2)
    c.save(tmp_path / "p.json", tmp_path / "a.json")
    back = Catalog.load(tmp_path / "p.json", tmp_path / "a.json")
    assert [p.to_dict() for p in back] == [p.to_dict() for p in c]


def test_synthetic_goals_follow_webshop_construction() -> None:
    c = Catalog.synthetic(200, seed=4)
    goals = make_goals(c, seed=4)
    assert [g.to_dict() for g in goals] == [g.to_dict() for g in make_goals(c, seed=4)]
    for p in list(c)[:40]:
        mine = [g for g in goals if g.asin == p.asin]
        expected = 1
        for values in p.options.values():
            expected *= len(values)
        assert len(mine) == expected
        assert {tuple(sorted(g.goal_options.items())) for g in mine} == {
            tuple(sorted(zip(sorted(p.options), combo)))
            for combo in itertools.product(*(p.options[n] for n in sorted(p.options)))}
        for g in mine:
            assert g.instruction_text.startswith(p.instruction_text)
            assert g.attributes == p.instruction_attributes and g.product_title == p.title
            ceiling = price_ceiling(p, 4)
            if ceiling is None:
                assert g.price_upper == NO_PRICE_LIMIT and "price lower" not in g.instruction_text
            else:
                assert p.price < g.price_upper == ceiling <= p.price + 40
                assert g.instruction_text.endswith(f", and price lower than {ceiling:.2f} dollars")
            for name, value in g.goal_options.items():
                assert f"{name}: {value}" in g.instruction_text
    # rarer attributes weigh more
    weights = {g.attributes[0]: g.weight for g in goals if len(g.attributes) == 1}
    counts = Counter(a for g in goals for a in g.attributes)
    rare, common = min(weights, key=lambda a: counts[a]), max(weights, key=lambda a: counts[a])
    assert counts[rare] < counts[common] and weights[rare] > weights[common]


def test_split_goals_is_seeded_and_disjoint() -> None:
    goals = make_goals(Catalog.synthetic(400, seed=1), seed=1)
    assert len(goals) > 1500
    split = split_goals(goals)
    assert (len(split["test"]), len(split["eval"]), len(split["train"])) == (500, 1000, len(goals) - 1500)
    ids = [id(g) for part in split.values() for g in part]
    assert len(set(ids)) == len(goals)
    assert [g.to_dict() for g in split["test"]] == [g.to_dict() for g in split_goals(goals)["test"]]
    assert split["test"] != split_goals(goals, seed=1)["test"]


def test_human_goals(files: dict[str, Path]) -> None:
    c = Catalog.load(files["products"], files["attrs"], files["human"])
    goals = make_goals(c, seed=0, human=True)
    assert len(goals) == 1  # the instruction without attributes is skipped
    g = goals[0]
    assert g.instruction_text.startswith("i want a long lasting cream, and price lower than")
    assert g.goal_options == {"option 1": "navy | blue"} and g.weight == 1.0
    with pytest.raises(ValueError, match="human instructions"):
        make_goals(Catalog.load(files["products"], files["attrs"]), human=True)


def test_data_half_imports_neither_torch_nor_mem1_gym() -> None:
    code = ("import sys, webshop_env.catalog, webshop_env.goals, webshop_env.search, webshop_env.reward; "
            "print(sorted(m for m in ('torch', 'mem1_gym', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
