"""Retrieval speed: bm25s (mem1_gym's default) against rank_bm25 (the reference it replaces).

For fictional corpora of each size, measures index build time (analysis
included), bm25s load time of the saved memory-mapped index, and per-query
latency on the world's gold queries, then prints a markdown table with the
bm25s speed-up over rank_bm25 measured in the same run. Times are CPU time of
this process (``time.process_time``), not wall-clock, so that other jobs on a
shared machine do not distort the comparison; the index save's disk writes
are therefore not counted. rank_bm25 scores every
document in Python per query term, so its query count is bounded to keep the
whole script to a few minutes.

    PYTHONPATH=. python benchmarks/retrieval.py       # 10k and 100k passages
    PYTHONPATH=. python benchmarks/retrieval.py --sizes 10000 --queries 500 --reference-queries 100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mem1_gym.data import generate_world
from mem1_gym.retrieval import BM25sRetriever, RankBM25Retriever


def _per_query_ms(retriever, queries: list[str], k: int) -> tuple[float, list[str]]:
    """Median latency of single-query calls in milliseconds, and each query's top-1 id."""
    times, top1 = [], []
    for q in queries:
        start = time.process_time()
        hits = retriever.search([q], k)[0]
        times.append((time.process_time() - start) * 1e3)
        top1.append(hits[0].id if hits else "")
    return statistics.median(times), top1


def bench_size(n: int, n_queries: int, n_reference: int, k: int, root: Path) -> dict[str, float]:
    """One row: build/load/query timings of both backends on an ``n``-passage world."""
    world = generate_world(0, n)
    queries = [g for split in world.splits.values() for q in split for g in q.gold_queries][:n_queries]

    start = time.process_time()
    fast = BM25sRetriever(world.corpus, cache_dir=root / f"bm25s-{n}", fingerprint=world.fingerprint)
    build_fast = time.process_time() - start
    start = time.process_time()
    BM25sRetriever(world.corpus, cache_dir=root / f"bm25s-{n}", fingerprint=world.fingerprint)
    load_fast = time.process_time() - start
    query_fast, top_fast = _per_query_ms(fast, queries, k)

    start = time.process_time()
    reference = RankBM25Retriever(world.corpus)
    build_ref = time.process_time() - start
    query_ref, top_ref = _per_query_ms(reference, queries[:n_reference], k)
    agree = sum(a == b for a, b in zip(top_fast, top_ref)) / len(top_ref)
    return {
        "n": n,
        "build_fast": build_fast,
        "load_fast": load_fast,
        "build_ref": build_ref,
        "query_fast": query_fast,
        "query_ref": query_ref,
        "n_fast": len(queries),
        "n_ref": len(top_ref),
        "agree": agree,
    }


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=2_000, help="bm25s queries per size")
    parser.add_argument("--reference-queries", type=int, nargs="+", default=[300, 100],
                        help="rank_bm25 queries per size (last value repeats)")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(args.sizes):
            n_ref = args.reference_queries[min(i, len(args.reference_queries) - 1)]
            rows.append(bench_size(n, args.queries, n_ref, args.k, Path(tmp)))

    print(f"| passages | bm25s build (s) | bm25s load, mmap (s) | rank_bm25 build (s) | bm25s ms/query (n) "
          f"| rank_bm25 ms/query (n) | query speed-up | build speed-up | top-1 agreement |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['build_fast']:.2f} | {r['load_fast']:.3f} | {r['build_ref']:.2f} "
            f"| {r['query_fast']:.3f} ({r['n_fast']}) | {r['query_ref']:.2f} ({r['n_ref']}) "
            f"| {r['query_ref'] / r['query_fast']:.0f}x | {r['build_ref'] / r['build_fast']:.1f}x | {r['agree']:.3f} |"
        )
    print(f"\nCPU seconds (time.process_time); median single-query latency, top-{args.k}; "
          "gold queries of fictional worlds (seed 0)")


if __name__ == "__main__":
    main()
