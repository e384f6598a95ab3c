"""Loopback load on the project's four servers, for two source trees in the same run.

Each server (WebShop site, retrieval, local web, policy with the random ``tiny`` model) is
started in its own process from a source tree and loaded by C client threads of this
process, R requests each, over keep-alive connections (reopened when the server closes
them). The table gives requests/s, p50/p99 latency and errors (a non-200 answer or a
failed request) per server and tree, and each tree's req/s as a ratio to the first tree.

Honest "before and after": the server processes import the packages of the tree they
run from (``PYTHONPATH=<tree>``) through the public API both versions share
(``WebShopServer``, ``RetrievalServer``, ``LocalWebServer``, ``PolicyServer``), while the
client, workload and timing code is this file in both cases. Trees take turns within each
repeat, so a load spike from other work on the machine hits them alike. To compare with
the old http.server implementation, check out main's old commit in a git worktree::

    git worktree add --detach /tmp/before <old commit>
    nice -n 10 python benchmarks/server_load.py --before /tmp/before

Bounded: C x R requests per server, tree and repeat (defaults 8 x 100, policy 4 x 10).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("webshop", "retrieval", "local-web", "policy")

# -- the server side: run as `python server_load.py --serve KIND` with PYTHONPATH=<tree> ------------


def serve(kind: str) -> None:
    """Start one server from the importable tree, print its URL, serve until stdin closes."""
    if kind == "webshop":
        from webshop_env.server import WebShopServer
        from webshop_env.site import SiteConfig, shared_site

        server = WebShopServer(shared_site(SiteConfig(num_products=200))).start()
    elif kind in ("retrieval", "local-web"):
        from mem1_gym.data import load_dataset
        from mem1_gym.retrieval import make_retriever

        data = load_dataset("fictional", seed=0, size=500)
        retriever = make_retriever("bm25s", data.corpus, data.fingerprint)
        if kind == "retrieval":
            from mem1_gym.retrieval_server import RetrievalServer

            server = RetrievalServer(retriever).start()
        else:
            from mem1_gym.web.site import LocalWebServer

            server = LocalWebServer(data.corpus, retriever)  # starts itself
    elif kind == "policy":
        from mem1_agent.models import load_policy
        from mem1_agent.serve_policy import PolicyServer

        model, tokenizer = load_policy("tiny", value_head=False)
        server = PolicyServer(("127.0.0.1", 0), model.eval(), tokenizer, "tiny").start()
    else:
        raise SystemExit(f"unknown server {kind!r}")
    print(server.url, flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.close()


# -- the client side -----------------------------------------------------------------------------


def workload(kind: str) -> Callable[[int, int], tuple[str, str, bytes | None]]:
    """(client, request index) -> (method, path, body) for ``kind``; every request expects 200."""
    if kind == "webshop":
        def request(c: int, i: int) -> tuple[str, str, bytes | None]:
            paths = [f"/load_{c}", f"/search_results/load_{c}/usb%20charger/1", f"/search_results/load_{c}/shirt/1"]
            return "GET", paths[i % len(paths)], None
    elif kind == "retrieval":
        queries = ["city province settled", "born cartographer", "guild founded", "epic poem written", "employed by"]

        def request(c: int, i: int) -> tuple[str, str, bytes | None]:
            body = {"queries": [queries[(c + i) % len(queries)]], "topk": 3, "return_scores": True}
            return "POST", "/retrieve", json.dumps(body).encode()
    elif kind == "local-web":
        def request(c: int, i: int) -> tuple[str, str, bytes | None]:
            return "GET", ("/search?q=city+settled&k=5" if i % 2 else "/health"), None
    else:
        def request(c: int, i: int) -> tuple[str, str, bytes | None]:
            body = {"model": "tiny", "prompt": f"<IS> client {c} turn {i}", "max_tokens": 4, "temperature": 0}
            return "POST", "/v1/completions", json.dumps(body).encode()
    return request


def run_clients(url: str, clients: int, requests: int, make: Callable[[int, int], tuple[str, str, bytes | None]]) -> tuple[float, list[float], int]:
    """C threads, R requests each; returns (wall seconds, latencies, errors)."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def worker(c: int) -> None:
        conn: http.client.HTTPConnection | None = None
        barrier.wait()
        for i in range(requests):
            method, path, body = make(c, i)
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[c] += 1
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors[c] += 1
                if conn is not None:
                    conn.close()
                conn = None
            latencies[c].append(time.perf_counter() - t0)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, [x for row in latencies for x in row], sum(errors)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start_server(tree: Path, kind: str) -> tuple[subprocess.Popen, str]:
    """Launch ``kind`` from ``tree`` and return the process and its URL."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree, env=env,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the {kind} server from {tree} did not start")
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    """Close the server's stdin (it closes itself); kill it if it lingers."""
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, default=None, help="a checkout of the code to compare against (e.g. a git worktree of an older commit)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ", ".join(SERVERS))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument("--policy-clients", type=int, default=4)
    parser.add_argument("--policy-requests", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs per server and tree; the table shows the median run by req/s")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    trees = ([("before", args.before.resolve())] if args.before else []) + [("after", ROOT)]
    print("trees: " + ", ".join(f"{label}={path}" for label, path in trees), flush=True)
    print(f"{'server':<10} {'tree':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs first':>9}")
    for kind in args.servers.split(","):
        clients, requests = (args.policy_clients, args.policy_requests) if kind == "policy" else (args.clients, args.requests)
        procs = {label: start_server(path, kind) for label, path in trees}
        runs: dict[str, list[tuple[float, list[float], int]]] = {label: [] for label, _ in trees}
        try:
            for label, _ in trees:  # warm-up: first-request costs (imports, caches) are not measured
                run_clients(procs[label][1], 2, 3, workload(kind))
            for _ in range(args.repeats):
                for label, _ in trees:
                    runs[label].append(run_clients(procs[label][1], clients, requests, workload(kind)))
        finally:
            for proc, _ in procs.values():
                stop_server(proc)
        first_rate = None
        for label, _ in trees:
            ordered = sorted(runs[label], key=lambda r: r[0])
            wall, lat, _ = ordered[len(ordered) // 2]
            errors = sum(r[2] for r in runs[label])
            rate = clients * requests / wall
            first_rate = first_rate or rate
            print(
                f"{kind:<10} {label:<7} {rate:>8.0f} {1000 * statistics.median(lat):>8.2f} {1000 * percentile(lat, 0.99):>8.2f} "
                f"{errors:>7} {rate / first_rate:>9.2f}",
                flush=True,
            )
    print(f"({args.policy_clients} clients x {args.policy_requests} requests for policy, {args.clients} x {args.requests} "
          f"for the others; median of {args.repeats} runs; errors summed over all runs)")


if __name__ == "__main__":
    main()
