"""Catalog generation/load time, search index build time and search latency of webshop_env.

    python benchmarks/webshop_catalog.py [--sizes 1000 100000] [--queries 200]

For each catalog size: materialising the synthetic catalog, writing it in the original WebShop
JSON format and loading it back (``Catalog.load``), building the bm25s index (and saving it to
the cache), re-opening it from the cache (memory-mapped), and the mean latency of a search
(top 50) for product queries and titles. On the smallest size the same documents go through
rank_bm25 (``BM25Okapi``, the pure-Python reference) and the table reports time ratios and how
often both rank the same product first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rank_bm25 import BM25Okapi

from webshop_env.catalog import Catalog
from webshop_env.search import SEARCH_RETURN_N, SearchEngine, product_document


def _timed(fn):  # type: ignore[no-untyped-def]
    """``(result, wall seconds)``; the CPU seconds of the last call are kept in ``_timed.cpu``."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _timed.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    return out, time.perf_counter() - start


def _cpu() -> str:
    # The benchmark machine may be shared: CPU time shows the cost without waiting for a core.
    return f"cpu {_timed.cpu:.2f} s"  # type: ignore[attr-defined]


def _queries(catalog: Catalog, n: int) -> list[str]:
    step = max(1, len(catalog) // n)
    picks = [catalog.at(i) for i in range(0, len(catalog), step)][:n]
    return [p.query if i % 2 else p.title.lower() for i, p in enumerate(picks)]


def bench_size(n: int, n_queries: int, work: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    catalog = Catalog.synthetic(n, seed=0)
    _, t_gen = _timed(lambda: sum(1 for _ in catalog))
    rows.append((f"generate {n:,} synthetic products", f"{t_gen:8.2f} s  ({_cpu()}, {_timed.cpu / n * 1e6:.0f} us/product)"))
    products = work / f"items_{n}.json"
    attrs = work / f"attrs_{n}.json"
    _, t_save = _timed(lambda: catalog.save(products, attrs))
    rows.append((f"save {n:,} in WebShop JSON format", f"{t_save:8.2f} s  ({_cpu()}, {products.stat().st_size / 2**20:.0f} MiB)"))
    loaded, t_load = _timed(lambda: Catalog.load(products, attrs))
    rows.append((f"Catalog.load {n:,} (parse + derive)", f"{t_load:8.2f} s  ({_cpu()}, {_timed.cpu / n * 1e6:.0f} us/product)"))
    cache = work / "cache"
    engine, t_build = _timed(lambda: SearchEngine(loaded, cache_dir=cache))
    rows.append((f"bm25s index build + save, {n:,} docs", f"{t_build:8.2f} s  ({_cpu()})"))
    reopened, t_open = _timed(lambda: SearchEngine(loaded, cache_dir=cache))
    assert not reopened.built
    rows.append((f"bm25s index open from cache, {n:,} docs", f"{t_open * 1e3:8.1f} ms"))
    queries = _queries(loaded, n_queries)
    reopened.search(queries[0])  # first call warms the memory map
    lat = []
    for q in queries:
        _, t = _timed(lambda q=q: reopened.search(q, top_k=SEARCH_RETURN_N))
        lat.append(t)
    rows.append((f"search latency, {n:,} docs (median / p95)",
                 f"{statistics.median(lat) * 1e3:8.2f} ms / {sorted(lat)[int(0.95 * len(lat))] * 1e3:.2f} ms"))
    return rows


def bench_lazy(n: int = 1_000_000, lookups: int = 1000) -> list[tuple[str, str]]:
    """A huge synthetic catalog costs nothing until products are looked at."""
    catalog, t_open = _timed(lambda: Catalog.synthetic(n, seed=0))
    step = n // lookups
    _, t_get = _timed(lambda: [catalog[catalog.asins[i * step + 7]] for i in range(lookups)])
    return [(f"Catalog.synthetic({n:,}) (lazy)", f"{t_open * 1e3:.2f} ms"),
            (f"{lookups:,} random lookups in it", f"{t_get * 1e3:.0f} ms  ({t_get / lookups * 1e6:.0f} us/lookup)")]


def bench_reference(n: int, n_queries: int) -> list[tuple[str, str]]:
    """bm25s vs rank_bm25 on the same documents and the same tokens."""
    catalog = Catalog.synthetic(n, seed=0)
    engine, t_bm25s = _timed(lambda: SearchEngine(catalog, use_cache=False))
    cpu_bm25s = _timed.cpu  # type: ignore[attr-defined]
    tok = engine._tokenizer  # same stemmer/stop words for both backends

    def ref_build() -> BM25Okapi:
        docs = [product_document(p) for p in catalog]
        ids = tok.tokenize(docs, update_vocab=False, return_as="ids", show_progress=False, allow_empty=False)
        return BM25Okapi(ids, k1=0.9, b=0.4)

    ref, t_ref = _timed(ref_build)
    cpu_ref = _timed.cpu  # type: ignore[attr-defined]
    queries = _queries(catalog, n_queries)
    t_s = t_r = 0.0
    same_top = 0
    for q in queries:
        hits, dt = _timed(lambda q=q: engine.search(q))
        t_s += dt
        ids = engine.query_token_ids(q)

        def ref_search(ids: list[int] = ids) -> list[str]:
            scores = ref.get_scores(ids)
            order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:SEARCH_RETURN_N]
            return [catalog.asins[i] for i in order if scores[i] > 0]

        ref_hits, dt = _timed(ref_search)
        t_r += dt
        same_top += bool(hits) and bool(ref_hits) and hits[0] == ref_hits[0]
    k = len(queries)
    return [
        (f"index build {n:,}: bm25s / rank_bm25", f"{t_bm25s:.3f} s / {t_ref:.3f} s  (cpu {cpu_bm25s:.3f} / {cpu_ref:.3f} s, ratio {cpu_ref / cpu_bm25s:.1f}x)"),
        (f"search {n:,}: bm25s / rank_bm25 per query",
         f"{t_s / k * 1e3:.2f} ms / {t_r / k * 1e3:.2f} ms  (ratio {t_r / t_s:.1f}x)"),
        (f"same top-1 product, bm25s vs rank_bm25", f"{same_top}/{k}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows += bench_size(n, args.queries, Path(tmp))
    rows += bench_lazy()
    rows += bench_reference(min(args.sizes), args.queries)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value.strip()}")


if __name__ == "__main__":
    main()
