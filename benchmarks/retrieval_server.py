"""Retrieval server throughput and latency under concurrent clients, against in-process retrieval.

Serves a bm25s index of the fictional corpus on loopback with ``RetrievalServer``
and runs C client threads, each sending R single-query ``/retrieve`` requests
through the ``http`` backend (keep-alive connections). Reports requests/s and
p50/p99 latency for:

* ``in-process``: ``retriever.search`` called directly by the same C threads
  under a lock (the reference the server replaces: every worker holding its own
  index and no HTTP);
* ``server``: the server with its defaults (one request per retriever call);
* ``server, cross-request batching``: waiting requests merged into one retriever call;
* ``server, new connection per request``: urllib without keep-alive.

Bounded: C and R are small by default; run with ``nice -n 10``::

    python benchmarks/retrieval_server.py --clients 8 --requests 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from typing import Callable

from mem1_gym.data import load_dataset
from mem1_gym.retrieval import Retriever, make_retriever
from mem1_gym.retrieval_http import HttpRetriever
from mem1_gym.retrieval_server import RetrievalServer, ServerLimits


def run_clients(clients: int, requests: int, call: Callable[[str], object], queries: list[str]) -> tuple[float, list[float], int]:
    """C threads, R calls each; returns (wall seconds, per-call latencies, errors)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def worker(c: int) -> None:
        barrier.wait()
        for r in range(requests):
            q = queries[(c * requests + r) % len(queries)]
            t0 = time.perf_counter()
            try:
                call(q)
            except Exception:
                errors[c] += 1
            latencies[c].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return wall, [x for row in latencies for x in row], sum(errors)


def median_run(runs: list[tuple[float, list[float], int]]) -> tuple[float, list[float], int]:
    """The median run by wall time; errors summed over all runs."""
    ordered = sorted(runs, key=lambda r: r[0])
    wall, latencies, _ = ordered[len(ordered) // 2]
    return wall, latencies, sum(r[2] for r in runs)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--dataset-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="runs per setup; the table shows the median run by req/s")
    args = parser.parse_args()

    dataset = load_dataset("fictional", seed=0, size=args.dataset_size)
    retriever: Retriever = make_retriever("bm25s", dataset.corpus, dataset.fingerprint)
    queries = [q for item in dataset.split("train") for q in item.gold_queries] or [p.title for p in dataset.corpus]
    k = args.topk
    lock = threading.Lock()

    def in_process(q: str) -> object:
        with lock:
            return retriever.search([q], k)

    plain = RetrievalServer(retriever).start()
    batching = RetrievalServer(retriever, limits=ServerLimits(max_batch_queries=512)).start()
    plain_client, batching_client = HttpRetriever(plain.url), HttpRetriever(batching.url)

    def fresh_connection(q: str) -> object:
        body = json.dumps({"queries": [q], "topk": k, "return_scores": True}).encode()
        request = urllib.request.Request(plain.url + "/retrieve", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    setups: dict[str, Callable[[str], object]] = {
        "in-process (reference)": in_process,
        "server": lambda q: plain_client.search([q], k),
        "server, cross-request batching": lambda q: batching_client.search([q], k),
        "server, new connection per request": fresh_connection,
    }
    # Setups take turns within each repeat, so a load spike from other work on
    # the machine hits them alike instead of one whole setup.
    runs: dict[str, list[tuple[float, list[float], int]]] = {label: [] for label in setups}
    try:
        for _ in range(args.repeats):
            for label, call in setups.items():
                runs[label].append(run_clients(args.clients, args.requests, call, queries))
        calls = batching.health()["batches"]
    finally:
        plain.close()
        batching.close()
    print(f"cross-request batching: {calls} retriever calls for {args.repeats * args.clients * args.requests} requests")
    rows = [(label, *median_run(r)) for label, r in runs.items()]

    reference_rate = args.clients * args.requests / rows[0][1]
    print(
        f"\n{len(dataset.corpus)} passages, {args.clients} clients x {args.requests} requests, topk={k}, "
        f"median of {args.repeats} runs (errors: all runs)\n"
        f"{'setup':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs ref':>7}"
    )
    for label, wall, lat, errors in rows:
        rate = args.clients * args.requests / wall
        print(
            f"{label:<36} {rate:>9.0f} {1000 * statistics.median(lat):>8.2f} {1000 * percentile(lat, 0.99):>8.2f} "
            f"{errors:>7} {rate / reference_rate:>7.2f}"
        )


if __name__ == "__main__":
    main()
