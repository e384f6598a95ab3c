"""BM25 search over the catalog: finds products, caches its index atomically, never raises on odd queries."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webshop_env.catalog import Catalog
from webshop_env.search import SEARCH_RETURN_N, SearchEngine, default_cache_dir, product_document


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.synthetic(400, seed=11)


@pytest.fixture
def engine(catalog: Catalog, tmp_path: Path) -> SearchEngine:
    return SearchEngine(catalog, cache_dir=tmp_path)


def test_document_is_webshop_index_text(catalog: Catalog) -> None:
    p = next(p for p in catalog if len(p.options) == 2)
    names = list(p.options)
    doc = product_document(p)
    assert doc.startswith(f"{p.title} {p.description} {p.bullet_points[0]} ".lower())
    assert doc.endswith(f"{names[0]}: {', '.join(p.options[names[0]])}, and "
                        f"{names[1]}: {', '.join(p.options[names[1]])}".lower())


def test_finds_product_by_its_title_words(catalog: Catalog, engine: SearchEngine) -> None:
    for p in list(catalog)[:30]:
        hits = engine.search(p.title)
        assert hits[0] == p.asin or p.asin in hits[:3]
        assert len(hits) <= SEARCH_RETURN_N and len(set(hits)) == len(hits)


def test_results_share_a_query_term_and_respect_top_k(catalog: Catalog, engine: SearchEngine) -> None:
    hits = engine.search("coffee table", top_k=5)
    assert len(hits) == 5
    assert all("table" in product_document(catalog[a]) for a in hits)
    assert engine.search("coffee table", top_k=0) == []
    assert engine.search("Tables") == engine.search("table")  # stemming, case


@pytest.mark.parametrize("query", ["", "   ", "the and of", "zzzqqq", "\ud800\udfff lone surrogates",
                                   "🛒 emoji ✨", "\u200b\u202e\x00 control", "ｆｕｌｌｗｉｄｔｈ ｓｈａｍｐｏｏ",
                                   "shampoo " * 20000, 12345, None])
def test_odd_queries_never_raise(engine: SearchEngine, query: object) -> None:
    vocab = (len(engine._tokenizer.word_to_id), len(engine._tokenizer.word_to_stem))
    hits = engine.search(query)  # type: ignore[arg-type]
    assert isinstance(hits, list) and all(isinstance(a, str) for a in hits)
    assert (len(engine._tokenizer.word_to_id), len(engine._tokenizer.word_to_stem)) == vocab  # read-only


def test_fullwidth_query_is_normalised(engine: SearchEngine) -> None:
    assert engine.search("ｓｈａｍｐｏｏ") == engine.search("shampoo") != []


def test_index_is_cached_and_reloaded(catalog: Catalog, tmp_path: Path) -> None:
    first = SearchEngine(catalog, cache_dir=tmp_path)
    assert first.built and (first.index_dir / "webshop_index.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]  # temp folder renamed away
    second = SearchEngine(catalog, cache_dir=tmp_path)
    assert not second.built
    for q in ("running shoes", "gluten free protein bar", "bluetooth speaker black"):
        assert second.search(q) == first.search(q)
    other = SearchEngine(Catalog.synthetic(50, seed=11), cache_dir=tmp_path)
    assert other.built and other.index_dir != first.index_dir


def test_damaged_cache_is_rebuilt(catalog: Catalog, tmp_path: Path) -> None:
    first = SearchEngine(catalog, cache_dir=tmp_path)
    expected = first.search("office chair")
    meta = first.index_dir / "webshop_index.json"
    meta.write_text(json.dumps({"fingerprint": "something else"}), encoding="utf-8")
    again = SearchEngine(catalog, cache_dir=tmp_path)
    assert again.built and again.search("office chair") == expected
    assert not SearchEngine(catalog, cache_dir=tmp_path).built  # the rebuilt index replaced the bad one


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEBSHOP_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    engine = SearchEngine(Catalog.synthetic(20, seed=0))
    assert engine.index_dir.parent == tmp_path / "env-cache" and engine.index_dir.is_dir()


def test_uncached_and_empty_catalogs(tmp_path: Path) -> None:
    small = Catalog.synthetic(30, seed=5)
    engine = SearchEngine(small, cache_dir=tmp_path, use_cache=False)
    assert engine.built and not any(tmp_path.iterdir()) and engine.search(small.at(0).title)[0] == small.asins[0]
    assert SearchEngine(Catalog.synthetic(0), cache_dir=tmp_path).search("anything") == []


def test_search_over_a_loaded_catalog(tmp_path: Path) -> None:
    records = [{"asin": f"B0000000{i:02d}", "name": name, "full_description": "", "small_description": [],
                "customization_options": {}, "pricing": "$5"} for i, name in
               enumerate(["Red Wool Scarf", "Blue Denim Jacket", "Green Tea Bags", "Wool Socks"])]
    (tmp_path / "items.json").write_text(json.dumps(records), encoding="utf-8")
    engine = SearchEngine(Catalog.load(tmp_path / "items.json"), cache_dir=tmp_path / "cache")
    assert engine.search("wool") == ["B000000003", "B000000000"]  # the shorter document ranks first
    assert engine.search("denim jacket") == ["B000000001"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=300))
def test_any_text_query_never_raises(engine: SearchEngine, query: str) -> None:
    hits = engine.search(query)
    assert len(hits) <= SEARCH_RETURN_N and len(set(hits)) == len(hits)


def test_concurrent_builds_leave_one_valid_index(catalog: Catalog, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        engines = list(pool.map(lambda _: SearchEngine(catalog, cache_dir=tmp_path), range(3)))
    assert [p.name for p in tmp_path.iterdir()] == [engines[0].index_dir.name]  # no temp folders left
    expected = engines[0].search("protein bar")
    assert all(e.search("protein bar") == expected for e in engines)
    assert SearchEngine(catalog, cache_dir=tmp_path).search("protein bar") == expected
