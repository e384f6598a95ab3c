"""A retrieval server speaking the Search-R1 HTTP API, so env workers share one index.

``mem1 serve-retriever`` loads a corpus, builds (or memory-maps) an index with any
:class:`~mem1_gym.retrieval.Retriever` backend and serves it::

    POST /retrieve  {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}
      -> {"result": [[{"document": {"id": "p1", "contents": "..."}, "score": 7.1}, ...], ...]}
    GET  /health    -> {"status": "ok", ...}

Without ``return_scores`` each hit is the bare document, as in Search-R1. The
same API is served by Search-R1/FlashRAG dense retrieval servers, so those plug
into the ``http`` backend (:mod:`mem1_gym.retrieval_http`) unchanged.

Concurrency: request threads never touch the retriever. They queue their queries
for one retriever thread, so backends need not be thread-safe and env workers
share one index. With ``max_batch_queries > 1`` that thread also merges the
requests waiting in the queue into one ``search`` call per distinct ``topk``
(cross-request batching). That pays for backends that batch (dense encoders);
bm25s scores query by query, and ``benchmarks/retrieval_server.py`` showed no
consistent difference for it, so batching is off by default (``--batch-queries N``
turns it on) and every request is answered on its own.

Bad requests (malformed JSON, missing or mistyped fields, ``topk`` or batch over
the limits, oversized bodies) are answered with a 4xx status and
``{"error": message}``.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Sequence

from webshop_env.http_service import HTTPService, OwnedHTTPServer, check_port

from .retrieval import Hit, Retriever


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for.

    Attributes:
        max_topk: largest ``topk`` accepted.
        max_queries: most queries in one request.
        max_query_chars: longest single query.
        max_body_bytes: largest request body.
        max_batch_queries: most queries merged from waiting requests into one retriever call
            (1: one request per call; a single request's queries always go together).
    """

    max_topk: int = 100
    max_queries: int = 1024
    max_query_chars: int = 4096
    max_body_bytes: int = 1 << 20
    max_batch_queries: int = 1


class BadRequest(Exception):
    """A request the server refuses; carries the HTTP status and a message for the client."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RetrieveRequest:
    """A validated ``/retrieve`` request."""

    queries: list[str]
    topk: int
    return_scores: bool


def parse_retrieve_request(body: bytes, limits: ServerLimits, default_topk: int = 3) -> RetrieveRequest:
    """Validate a ``/retrieve`` body; raise :class:`BadRequest` naming the problem."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed JSON body: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body must be a JSON object, got {type(payload).__name__}")
    if "queries" not in payload:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "missing field 'queries' (a list of strings)")
    queries = payload["queries"]
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "field 'queries' must be a list of strings")
    if len(queries) > limits.max_queries:
        raise BadRequest(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{len(queries)} queries in one request; the limit is {limits.max_queries}"
        )
    longest = max((len(q) for q in queries), default=0)
    if longest > limits.max_query_chars:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"a query is {longest} characters long; the limit is {limits.max_query_chars}")
    topk = payload.get("topk", default_topk)
    # bool is an int subclass: refuse it explicitly so {"topk": true} is an error.
    if not isinstance(topk, int) or isinstance(topk, bool):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"field 'topk' must be an integer, got {json.dumps(topk)}")
    if not 1 <= topk <= limits.max_topk:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"field 'topk' must be between 1 and {limits.max_topk}, got {topk}")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"field 'return_scores' must be true or false, got {json.dumps(return_scores)}")
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
    done: threading.Event = field(default_factory=threading.Event)
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

    def submit(self, queries: list[str], topk: int) -> _Job:
        job = _Job(queries, topk)
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
                    job.done.set()
                continue
            self.batches += 1
            self.queries += len(queries)
            start = 0
            for job in jobs:
                job.hits = hits[start : start + len(job.queries)]
                start += len(job.queries)
                job.done.set()


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    # Headers and body go out in two writes; with Nagle's algorithm the second
    # waits for the client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive: env workers reuse their connection
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status, {"error": message})

    def _discard(self, length: int) -> None:
        # Reading a moderately oversized body lets the client see the 413
        # instead of a reset connection; far larger ones are cut off.
        if length <= 8 * self.server.owner.limits.max_body_bytes:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send_json(HTTPStatus.OK, self.server.owner.health())
        elif path == "/retrieve":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST /retrieve with a JSON body")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r}; try POST /retrieve or GET /health")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        length_header = self.headers.get("Content-Length")
        if path != "/retrieve":
            # Unread bodies would corrupt the keep-alive stream: drop the connection.
            self.close_connection = True
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r}; try POST /retrieve")
            return
        if length_header is None:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header!r}")
            return
        if length > owner.limits.max_body_bytes:
            self.close_connection = True
            self._discard(length)
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {owner.limits.max_body_bytes}",
            )
            return
        body = self.rfile.read(length)
        try:
            request = parse_retrieve_request(body, owner.limits, owner.default_topk)
        except BadRequest as exc:
            self._error(exc.status, exc.message)
            return
        job = owner.batcher.submit(request.queries, request.topk)
        if not job.done.wait(owner.request_timeout):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"retrieval took longer than {owner.request_timeout} s")
            return
        if job.error is not None:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"retrieval failed: {job.error}")
            return
        assert job.hits is not None
        self._send_json(HTTPStatus.OK, {"result": hits_to_json(job.hits, request.return_scores)})


class RetrievalServer(HTTPService):
    """Serves a :class:`~mem1_gym.retrieval.Retriever` over HTTP (Search-R1 API).

    Args:
        retriever: any backend; only the batcher thread calls it.
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`port` after construction).
        limits: request limits.
        default_topk: ``topk`` when a request leaves it out (Search-R1 uses 3).
        request_timeout: seconds a request waits for its batch before a 503.
        name: backend name reported by ``/health``.
        verbose: log every request to stderr.

    Use as a context manager, or call :meth:`start` / :meth:`close` (see
    :class:`~webshop_env.http_service.HTTPService`).
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
    ):
        self.retriever = retriever
        self.limits = limits or ServerLimits()
        self.default_topk = default_topk
        self.request_timeout = request_timeout
        self.name = name or type(retriever).__name__
        self.verbose = verbose
        self.batcher = _Batcher(retriever, self.limits.max_batch_queries)
        try:
            # The stdlib backlog (5) resets connections under a burst of concurrent clients.
            super().__init__(_Handler, host, port, backlog=256)
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
        }

    def close(self) -> None:
        """Stop serving, release the port and stop the batcher thread."""
        super().close()
        self.batcher.stop()


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
    parser.add_argument("--max-topk", type=int, default=ServerLimits.max_topk, help="largest topk a request may ask for")
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
        server = RetrievalServer(
            retriever, args.host, args.port, ServerLimits(max_topk=args.max_topk, max_batch_queries=max(1, args.batch_queries)), name=args.backend, verbose=args.verbose
        )
    except OSError as exc:
        print(f"mem1 serve-retriever: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    server.serve_until_interrupted(f"serving {n_docs} passages of {args.dataset!r} ({args.backend}) at {server.url}/retrieve")
    return 0
