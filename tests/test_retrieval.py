"""Retrieval: bm25s (saved, memory-mapped, concurrency-safe) and rank_bm25 backends, the registry."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest

from mem1_gym.data import Passage, generate_world, load_dataset
from mem1_gym.retrieval import (
    RETRIEVER_BACKENDS,
    BM25sRetriever,
    RankBM25Retriever,
    Retriever,
    clear_retriever_cache,
    make_retriever,
    register_retriever_backend,
)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Keep every index these tests build out of the user's cache."""
    monkeypatch.setenv("MEM1_CACHE_DIR", str(tmp_path / "cache"))


def _gold_hit_rate(world, retriever, k=3, limit=None):
    """Share of (question, hop) pairs whose gold query returns the hop's gold passage in the top k."""
    hits = total = 0
    questions = [q for split in world.splits.values() for q in split][:limit]
    for q in questions:
        results = retriever.search(list(q.gold_queries), k)
        for pid, hits_of_query in zip(world.gold_passages[q.id], results):
            total += 1
            hits += pid in [h.id for h in hits_of_query]
    return hits / total


@pytest.mark.parametrize("n", [2_000, 20_000])
def test_gold_queries_retrieve_their_passage(tmp_path, n):
    world = generate_world(0, n)
    retriever = BM25sRetriever(world.corpus, cache_dir=tmp_path / "idx", fingerprint=world.fingerprint)
    assert _gold_hit_rate(world, retriever) == 1.0


def test_gold_queries_hold_for_other_seeds(tmp_path):
    for seed in (1, 2):
        world = generate_world(seed, 1_000)
        retriever = BM25sRetriever(world.corpus, cache_dir=tmp_path / f"idx{seed}")
        assert _gold_hit_rate(world, retriever) == 1.0


def test_bm25s_and_rank_bm25_agree_on_top1(tmp_path):
    world = generate_world(0, 2_000)
    fast = BM25sRetriever(world.corpus, cache_dir=tmp_path / "idx")
    reference = RankBM25Retriever(world.corpus)
    queries = [g for split in world.splits.values() for q in split for g in q.gold_queries][:600]
    fast_top = [h[0].id for h in fast.search(queries, 1)]
    ref_top = [h[0].id for h in reference.search(queries, 1)]
    assert fast_top == ref_top
    assert _gold_hit_rate(world, reference, limit=300) == 1.0


def test_wiki_gold_queries_mostly_hit():
    ds = load_dataset("wiki-vital")
    retriever = make_retriever("bm25s", ds.corpus, ds.fingerprint)
    questions = ds.split("test")
    results = retriever.search([q.gold_queries[0] for q in questions], 3)
    hits = sum(q.id in [f"wiki-{h.id}" for h in res] for q, res in zip(questions, results))
    assert hits / len(questions) > 0.95


def _tiny_corpus():
    return [
        Passage("a", "Alpha", "The alpha passage mentions zebras and lions."),
        Passage("b", "Beta", "The beta passage mentions lions only."),
        Passage("c", "Gamma", "Nothing in common here."),
    ]


@pytest.mark.parametrize("make", [lambda c, d: BM25sRetriever(c, cache_dir=d), lambda c, d: RankBM25Retriever(c)])
def test_edge_queries(tmp_path, make):
    retriever = make(_tiny_corpus(), tmp_path / "idx")
    assert isinstance(retriever, Retriever)
    assert retriever.search(["", "   \n\t", "the of and"], 3) == [[], [], []]
    # k beyond the corpus: every matching passage, never more than exist, never a zero-score one.
    hits = retriever.search(["lions"], 50)[0]
    assert sorted(h.id for h in hits) == ["a", "b"]
    assert retriever.search(["zebras lions"], 50)[0][0].id == "a"
    assert retriever.search(["lions"], 0) == [[]]
    assert retriever.search(["unknownword"], 3) == [[]]
    start = time.perf_counter()
    huge = retriever.search(["zebras " * 150_000, "x" * 1_000_000], 2)  # ~1 MB each
    assert huge[0][0].id == "a" and huge[1] == []
    assert time.perf_counter() - start < 30  # a loose bound: capped, it takes milliseconds
    assert hits[0].contents == _tiny_corpus()[[p.id for p in _tiny_corpus()].index(hits[0].id)].contents


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        BM25sRetriever([], cache_dir=tmp_path / "idx")
    with pytest.raises(ValueError, match="empty corpus"):
        RankBM25Retriever([])


def test_index_is_saved_and_reused(tmp_path):
    corpus = generate_world(0, 300).corpus
    first = BM25sRetriever(corpus, cache_dir=tmp_path / "idx")
    assert first.built
    mtimes = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "idx").iterdir()}
    second = BM25sRetriever(corpus, cache_dir=tmp_path / "idx")
    assert not second.built
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "idx").iterdir()} == mtimes
    assert first.search(["born"], 5) == second.search(["born"], 5)


def test_stale_index_is_rebuilt(tmp_path):
    small, other = generate_world(0, 200).corpus, generate_world(1, 250).corpus
    BM25sRetriever(small, cache_dir=tmp_path / "idx", fingerprint="same")
    rebuilt = BM25sRetriever(other, cache_dir=tmp_path / "idx", fingerprint="same")
    assert rebuilt.built
    assert rebuilt.search([other[0].title], 1)[0][0].id == other[0].id
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp or stale dirs left


def test_default_location_follows_env(tmp_path):
    corpus = _tiny_corpus()
    retriever = BM25sRetriever(corpus, fingerprint="tiny-fp")
    assert retriever.index_dir == tmp_path / "cache" / "bm25s" / "tiny-fp"
    assert (retriever.index_dir / "mem1_index.json").is_file()


def _build_in_child(args):
    seed, index_dir = args
    retriever = BM25sRetriever(generate_world(seed, 3_000).corpus, cache_dir=index_dir)
    return retriever.built, [h.id for h in retriever.search(["born city", "founded"], 5)[0]]


def test_concurrent_builds_are_safe(tmp_path):
    index_dir = str(tmp_path / "shared" / "idx")
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_build_in_child, [(0, index_dir)] * 3)
    assert any(built for built, _ in results)
    assert len({tuple(ids) for _, ids in results}) == 1
    assert os.listdir(tmp_path / "shared") == ["idx"]
    assert not BM25sRetriever(generate_world(0, 3_000).corpus, cache_dir=index_dir).built


def test_make_retriever_cache_and_registry(tmp_path):
    clear_retriever_cache()
    world = generate_world(0, 400)
    a = make_retriever("bm25s", world.corpus, world.fingerprint)
    assert make_retriever("bm25s", world.corpus, world.fingerprint) is a
    assert isinstance(make_retriever("rank_bm25", world.corpus, world.fingerprint), RankBM25Retriever)
    assert make_retriever(a, world.corpus) is a
    with pytest.raises(ValueError, match="unknown retriever 'faiss'.*bm25s.*rank_bm25"):
        make_retriever("faiss", world.corpus, world.fingerprint)
    with pytest.raises(TypeError):
        make_retriever(3, world.corpus)  # type: ignore[arg-type]
    # URL-style specs select a backend by scheme, and the factory sees the whole spec.
    seen = []

    def factory(spec, corpus, fingerprint):
        seen.append(spec)
        return RankBM25Retriever(corpus)

    register_retriever_backend("memtest", factory)
    try:
        r = make_retriever("memtest://127.0.0.1:1/x", world.corpus, world.fingerprint)
        assert seen == ["memtest://127.0.0.1:1/x"] and isinstance(r, RankBM25Retriever)
    finally:
        del RETRIEVER_BACKENDS["memtest"]
        clear_retriever_cache()


def test_unwritable_cache_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="MEM1_CACHE_DIR"):
        BM25sRetriever(_tiny_corpus(), cache_dir=blocker / "idx")


def _corrupt(index_dir, kind: str) -> None:
    files = sorted(p for p in index_dir.iterdir() if p.name != "mem1_index.json")
    data = next(p for p in files if p.name.startswith("data"))
    vocab = next(p for p in files if p.name.startswith("vocab"))
    if kind == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif kind == "flipped byte":  # same size, a score changed: wrong hits if loaded
        raw = bytearray(data.read_bytes())
        raw[-3] ^= 0x40
        data.write_bytes(bytes(raw))
    elif kind == "deleted file":
        vocab.unlink()
    elif kind == "extra bytes":
        with data.open("ab") as fh:
            fh.write(b"\0" * 64)
    elif kind == "valid other json":  # parses, but maps words to other ids
        raw = json.loads(vocab.read_text())
        words = sorted(raw)
        vocab.write_text(json.dumps(dict(zip(words, reversed([raw[w] for w in words])))))
    elif kind == "meta without sizes":  # an index from before sizes and hashes were recorded
        meta = json.loads((index_dir / "mem1_index.json").read_text())
        del meta["files"]
        (index_dir / "mem1_index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", ["truncated", "flipped byte", "deleted file", "extra bytes", "valid other json", "meta without sizes"])
def test_damaged_index_is_verified_and_rebuilt(tmp_path, kind):
    corpus = generate_world(0, 300).corpus
    queries = ["born", corpus[5].title, corpus[17].title + " founded"]
    expected = BM25sRetriever(corpus, cache_dir=tmp_path / "reference").search(queries, 5)
    BM25sRetriever(corpus, cache_dir=tmp_path / "idx")
    _corrupt(tmp_path / "idx", kind)
    reopened = BM25sRetriever(corpus, cache_dir=tmp_path / "idx")
    assert reopened.built and reopened.search(queries, 5) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "reference"]  # replaced in place, nothing left over
    assert not BM25sRetriever(corpus, cache_dir=tmp_path / "idx").built  # the rebuilt index verifies
