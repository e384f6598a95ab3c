"""A retrieval server speaking the Search-R1 HTTP API, so env workers share one index.

``mem1 serve-retriever`` loads a corpus, builds (or memory-maps) an index with any
:class:`~mem1_gym.retrieval.Retriever` backend and serves it::

    POST /retrieve  {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}
      -> {"result": [[{"document": {"id": "p1", "contents": "..."}, "score": 7.1}, ...], ...]}
    GET  /health    -> {"status": "ok", ...}

Without ``return_scores`` each hit is the bare document, as in Search-R1. The
same API is served by Search-R1/FlashRAG dense retrieval servers, so those plug
into the ``http`` backend (:mod:`mem1_gym.retrieval_http`) unchanged.

Serving runs on uvicorn (see :mod:`mem1_http`): request handlers never touch the
retriever. They queue their queries for one retriever thread, so backends need not be
thread-safe and env workers share one index. A request's queries are queued in
chunks (``ServerLimits.chunk_hits``), so one huge request neither holds all its
results in memory at once nor keeps other requests waiting until it is done. With ``max_batch_queries > 1`` that thread also merges the
requests waiting in the queue into one ``search`` call per distinct ``topk``
(cross-request batching). That pays for backends that batch (dense encoders);
bm25s scores query by query, and ``benchmarks/retrieval_server.py`` showed no
consistent difference for it, so batching is off by default (``--batch-queries N``
turns it on) and every request is answered on its own.

Like Search-R1's server, ``topk`` left out, null or 0 means the server's default
(``--topk``, 3). Search-R1's training sends every rollout's query of a turn in one
request (2,560 for a GRPO batch of 512 x 5): up to ``--max-queries`` (4,096) are
accepted. ``/health`` is ours; the ``http`` client never needs it.

Bad requests (malformed or too deeply nested JSON, missing or mistyped fields, ``topk``
or batch over the limits, oversized or too slow bodies, unknown paths and methods) are
answered with a 4xx status and ``{"error": message}``; a failing retriever with 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import threading
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mem1_http import ASGIService, HTTPError, HTTPLimits, error_handlers, parse_json, read_body, thread_signal, check_port

from .retrieval import Hit, Retriever


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for.

    Attributes:
        max_topk: largest ``topk`` accepted.
        max_queries: most queries in one request (Search-R1's training sends up to 2,560:
            GRPO batch 512 x 5 rollouts, one request per turn).
        max_query_chars: longest single query.
        max_body_bytes: largest request body (4,096 queries of 4,096 characters fit).
        max_batch_queries: most queries merged from waiting requests into one retriever call
            (1: one request per call).
        chunk_hits: a request's queries go to the retriever and back to the client in chunks
            of ``chunk_hits // topk`` queries, so memory per request stays bounded (Search-R1's
            2,560 queries at topk 3 are one chunk); other requests are served between chunks.
    """

    max_topk: int = 100
    max_queries: int = 4096
    max_query_chars: int = 4096
    max_body_bytes: int = 16 << 20
    max_batch_queries: int = 1
    chunk_hits: int = 8192


@dataclass(frozen=True)
class RetrieveRequest:
    """A validated ``/retrieve`` request."""

    queries: list[str]
    topk: int
    return_scores: bool


def parse_retrieve_request(body: bytes, limits: ServerLimits, default_topk: int = 3, max_depth: int = 32) -> RetrieveRequest:
    """Validate a ``/retrieve`` body; raise :class:`~mem1_http.HTTPError` naming the problem.

    ``topk`` left out, null or 0 means ``default_topk``, as in Search-R1's server.
    """
    payload = parse_json(body, max_depth)
    if not isinstance(payload, dict):
        raise HTTPError(400, f"the body must be a JSON object, got {type(payload).__name__}")
    if "queries" not in payload:
        raise HTTPError(400, "missing field 'queries' (a list of strings)")
    queries = payload["queries"]
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise HTTPError(400, "field 'queries' must be a list of strings")
    if len(queries) > limits.max_queries:
        raise HTTPError(
            413, f"{len(queries)} queries in one request; the limit is {limits.max_queries}"
        )
    longest = max((len(q) for q in queries), default=0)
    if longest > limits.max_query_chars:
        raise HTTPError(400, f"a query is {longest} characters long; the limit is {limits.max_query_chars}")
    topk = payload.get("topk")
    if topk is None or (topk == 0 and not isinstance(topk, bool)):
        topk = default_topk
    # bool is an int subclass: refuse it explicitly so {"topk": true} is an error.
    if not isinstance(topk, int) or isinstance(topk, bool):
        raise HTTPError(400, f"field 'topk' must be an integer, got {json.dumps(topk)}")
    if not 1 <= topk <= limits.max_topk:
        raise HTTPError(400, f"field 'topk' must be between 1 and {limits.max_topk}, got {topk}")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise HTTPError(400, f"field 'return_scores' must be true or false, got {json.dumps(return_scores)}")
    return RetrieveRequest(queries, topk, return_scores)


def hits_to_json(hits: Sequence[Sequence[Hit]], return_scores: bool) -> list[list[dict[str, Any]]]:
    """Search-R1 result layout: documents, wrapped with their score when asked."""
    out = []
    for row in hits:
        docs = []
        for hit in row:
            doc = {"id": hit.id, "contents": hit.contents}
            docs.append({"document": doc, "score": float(hit.score)} if return_scores else doc)
        out.append(docs)
    return out


@dataclass
class _Job:
    queries: list[str]
    topk: int
    on_done: Callable[[], None]
    hits: list[list[Hit]] | None = None
    error: str | None = None


class _Batcher:
    """One thread that owns the retriever and answers queued jobs in batches."""

    def __init__(self, retriever: Retriever, max_batch_queries: int):
        self.retriever = retriever
        self.max_batch_queries = max_batch_queries
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches = 0
        self.queries = 0
        self.thread = threading.Thread(target=self._run, name="retrieval-batcher", daemon=True)
        self.thread.start()

    def submit(self, queries: list[str], topk: int, on_done: Callable[[], None]) -> _Job:
        """Queue a search; ``on_done`` is called from the batcher thread once ``hits`` or ``error`` is set."""
        job = _Job(queries, topk, on_done)
        self.jobs.put(job)
        return job

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            size = len(first.queries)
            stop = False
            # Take whatever else is already waiting: no added latency when idle.
            while size < self.max_batch_queries:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
                size += len(job.queries)
            self._answer(batch)
            if stop:
                return

    def _answer(self, batch: list[_Job]) -> None:
        # One search per distinct k: a top-k list is not always the prefix of a
        # larger top-k when scores tie, and results must not depend on batching.
        by_k: dict[int, list[_Job]] = {}
        for job in batch:
            by_k.setdefault(job.topk, []).append(job)
        for k, jobs in by_k.items():
            queries = [q for job in jobs for q in job.queries]
            try:
                hits = self.retriever.search(queries, k) if queries else []
                if len(hits) != len(queries):
                    raise RuntimeError(f"the retriever returned {len(hits)} hit lists for {len(queries)} queries")
            except Exception as exc:  # reported to every client of the batch as a 500
                for job in jobs:
                    job.error = f"{type(exc).__name__}: {exc}"
                    job.on_done()
                continue
            self.batches += 1
            self.queries += len(queries)
            start = 0
            for job in jobs:
                job.hits = hits[start : start + len(job.queries)]
                start += len(job.queries)
                job.on_done()


class RetrievalServer(ASGIService):
    """Serves a :class:`~mem1_gym.retrieval.Retriever` over HTTP (Search-R1 API) on uvicorn.

    Args:
        retriever: any backend; only the batcher thread calls it.
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`port` after construction).
        limits: request limits.
        default_topk: ``topk`` when a request leaves it out, or sends null or 0 (Search-R1: 3).
        request_timeout: seconds one chunk of a request waits for the retriever before a 503.
        name: backend name reported by ``/health``.
        verbose: log every request to stderr.
        http_limits: connection-level limits (timeouts, connection cap, JSON depth);
            ``limits.max_body_bytes`` replaces its body limit.

    Use as a context manager, or call :meth:`start` / :meth:`close` (see
    :class:`~mem1_http.service.ASGIService`).
    """

    thread_name = "retrieval-server"

    def __init__(
        self,
        retriever: Retriever,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        default_topk: int = 3,
        request_timeout: float = 60.0,
        name: str = "",
        verbose: bool = False,
        http_limits: HTTPLimits | None = None,
    ):
        self.retriever = retriever
        self.limits = limits or ServerLimits()
        if not 1 <= default_topk <= self.limits.max_topk:
            raise ValueError(f"default_topk must be between 1 and max_topk ({self.limits.max_topk}), got {default_topk}")
        self.default_topk = default_topk
        self.request_timeout = request_timeout
        self.name = name or type(retriever).__name__
        http_limits = replace(http_limits or HTTPLimits(), max_body_bytes=self.limits.max_body_bytes)
        app = Starlette(
            routes=[Route("/retrieve", self._retrieve, methods=["POST"]), Route("/health", self._health, methods=["GET", "HEAD"])],
            exception_handlers=error_handlers(_error_response),
        )
        self.batcher = _Batcher(retriever, self.limits.max_batch_queries)
        try:
            super().__init__(app, host, port, limits=http_limits, verbose=verbose)
        except OSError:
            self.batcher.stop()
            raise

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers."""
        return {
            "status": "ok",
            "backend": self.name,
            "batches": self.batcher.batches,
            "queries": self.batcher.queries,
            "max_topk": self.limits.max_topk,
            "max_queries": self.limits.max_queries,
            "default_topk": self.default_topk,
        }

    async def _health(self, request: Request) -> Response:
        return JSONResponse(self.health())

    async def _search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """One chunk's hits, from the batcher thread, without blocking the event loop."""
        done, notify = thread_signal()
        job = self.batcher.submit(queries, topk, on_done=notify)
        try:
            await asyncio.wait_for(done, self.request_timeout)
        except asyncio.TimeoutError:
            raise HTTPError(503, f"retrieval took longer than {self.request_timeout:g} s") from None
        if job.error is not None:
            raise HTTPError(500, f"retrieval failed: {job.error}")
        assert job.hits is not None
        return job.hits

    async def _retrieve(self, request: Request) -> Response:
        http = self.http_limits
        body = await read_body(request, http.max_body_bytes, http.body_timeout)
        parsed = parse_retrieve_request(body, self.limits, self.default_topk, http.max_json_depth)
        # Chunks bound the memory a request takes: one chunk's hits and JSON at a time.
        step = max(1, self.limits.chunk_hits // parsed.topk)
        chunks = [parsed.queries[i : i + step] for i in range(0, len(parsed.queries), step)] or [[]]
        # The first chunk is answered before the status line, so a failing retriever is a 500.
        first = await self._search(chunks[0], parsed.topk)
        if len(chunks) == 1:
            return JSONResponse({"result": hits_to_json(first, parsed.return_scores)})

        async def stream() -> AsyncIterator[bytes]:
            # A later chunk that fails ends the stream early: the client sees a broken
            # response (and retries), never a short result list.
            yield b'{"result": ['
            for i, chunk in enumerate(chunks):
                hits = first if i == 0 else await self._search(chunk, parsed.topk)
                rows = json.dumps(hits_to_json(hits, parsed.return_scores))[1:-1]
                yield ((", " if i else "") + rows).encode("utf-8")
            yield b"]}"

        return StreamingResponse(stream(), media_type="application/json")

    def close(self) -> None:
        """Stop serving, release the port and stop the batcher thread."""
        super().close()
        self.batcher.stop()


def _error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _load_retriever(args: argparse.Namespace) -> tuple[Retriever, int]:
    """The dataset's corpus and the index over it that the command serves."""
    from .data import load_dataset
    from .retrieval import BM25sRetriever, make_retriever

    dataset = load_dataset(args.dataset, seed=args.dataset_seed, size=args.dataset_size, corpus=args.corpus)
    if args.index is not None:
        if args.backend != "bm25s":
            raise ValueError("--index applies to the bm25s backend only (rank_bm25 keeps its index in memory)")
        return BM25sRetriever(dataset.corpus, cache_dir=args.index, fingerprint=dataset.fingerprint), len(dataset.corpus)
    if "://" in args.backend:
        raise ValueError("a server cannot serve another server: choose bm25s or rank_bm25")
    return make_retriever(args.backend, dataset.corpus, dataset.fingerprint), len(dataset.corpus)


def cli(argv: list[str]) -> int:
    """``mem1 serve-retriever``: serve a corpus's index over HTTP until interrupted."""
    parser = argparse.ArgumentParser(
        prog="mem1 serve-retriever",
        description="Serve a retrieval index over HTTP with the Search-R1 API (POST /retrieve, GET /health).",
    )
    parser.add_argument("--dataset", default="fictional", help="fictional, wiki-vital, or a path to a dataset (default: fictional)")
    parser.add_argument("--corpus", default=None, help="corpus JSONL (id, contents) for a question-file dataset")
    parser.add_argument("--dataset-seed", type=int, default=0, help="seed of generated datasets (default: 0)")
    parser.add_argument("--dataset-size", type=int, default=None, help="size of generated datasets (default: the loader's)")
    parser.add_argument("--backend", default="bm25s", help="retriever backend: bm25s or rank_bm25 (default: bm25s)")
    parser.add_argument("--index", default=None, help="directory where the index is saved and memory-mapped from")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    parser.add_argument("--topk", type=int, default=3, help="topk when a request leaves it out or sends null or 0 (default: 3)")
    parser.add_argument("--max-topk", type=int, default=ServerLimits.max_topk, help=f"largest topk a request may ask for (default: {ServerLimits.max_topk})")
    parser.add_argument(
        "--max-queries", type=int, default=ServerLimits.max_queries,
        help=f"most queries in one request (default: {ServerLimits.max_queries}; Search-R1 training sends up to 2560)",
    )
    parser.add_argument(
        "--batch-queries",
        type=int,
        default=ServerLimits.max_batch_queries,
        help="merge waiting requests into retriever calls of up to N queries (for batching backends; default 1: off)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        check_port(args.port)
        retriever, n_docs = _load_retriever(args)
    except (OSError, ValueError) as exc:
        print(f"mem1 serve-retriever: {exc}", file=sys.stderr)
        return 2
    try:
        limits = ServerLimits(max_topk=args.max_topk, max_queries=args.max_queries, max_batch_queries=max(1, args.batch_queries))
        server = RetrievalServer(retriever, args.host, args.port, limits, default_topk=args.topk, name=args.backend, verbose=args.verbose)
    except ValueError as exc:
        print(f"mem1 serve-retriever: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mem1 serve-retriever: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    server.serve_until_interrupted(f"serving {n_docs} passages of {args.dataset!r} ({args.backend}) at {server.url}/retrieve")
    return 0
