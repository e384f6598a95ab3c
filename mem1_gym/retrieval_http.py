"""The ``http`` retriever backend: a client of a Search-R1-style retrieval server.

Any spec starting with ``http://`` or ``https://`` selects it, e.g.
``retriever="http://127.0.0.1:8000"`` (``/retrieve`` is appended when the URL
has no path). The server may be ``mem1 serve-retriever`` or a Search-R1/FlashRAG
dense retrieval server: both answer ``POST /retrieve``.

The client batches queries (``batch_size`` per request), keeps one persistent
connection per thread, times out each request, and retries connection failures
and 5xx answers a bounded number of times with exponential backoff. When the
server stays unreachable, :class:`RetrieverUnavailable` names the URL and how
to start a server; a 4xx answer raises :class:`RetrievalRequestError` with the
server's message at once (retrying would not help).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

from .retrieval import Hit


class RetrievalRequestError(ValueError):
    """The retrieval server refused a request (4xx) or answered something unreadable."""


class RetrieverUnavailable(ConnectionError):
    """The retrieval server could not be reached (or kept failing) after all retries."""


def _document_contents(doc: dict[str, Any]) -> str:
    # Search-R1 servers send "contents"; some FlashRAG corpora have title/text instead.
    if isinstance(doc.get("contents"), str):
        return doc["contents"]
    title, text = doc.get("title"), doc.get("text")
    if isinstance(text, str):
        return f'"{title}"\n{text}' if isinstance(title, str) else text
    raise RetrievalRequestError(f"a document has neither 'contents' nor 'text': {json.dumps(doc)[:200]}")


def parse_retrieve_response(payload: Any, n_queries: int) -> list[list[Hit]]:
    """Turn a ``/retrieve`` answer (with or without scores) into hit lists."""
    if not isinstance(payload, dict) or not isinstance(payload.get("result"), list):
        raise RetrievalRequestError("the answer has no 'result' list")
    rows = payload["result"]
    if len(rows) != n_queries:
        raise RetrievalRequestError(f"the answer has {len(rows)} result lists for {n_queries} queries")
    out: list[list[Hit]] = []
    for row in rows:
        if not isinstance(row, list):
            raise RetrievalRequestError("a result entry is not a list")
        hits = []
        for rank, item in enumerate(row):
            if not isinstance(item, dict):
                raise RetrievalRequestError("a hit is not a JSON object")
            doc, score = (item["document"], item.get("score", 0.0)) if "document" in item else (item, 0.0)
            if not isinstance(doc, dict):
                raise RetrievalRequestError("a hit's document is not a JSON object")
            doc_id = doc.get("id", doc.get("doc_id", f"rank{rank}"))
            hits.append(Hit(id=str(doc_id), contents=_document_contents(doc), score=float(score)))
        out.append(hits)
    return out


class HttpRetriever:
    """Retriever backed by a retrieval server.

    Args:
        url: server base URL or full ``/retrieve`` URL.
        timeout: seconds per HTTP request (connect and read).
        retries: extra attempts after a connection failure or 5xx answer.
        backoff: seconds before the first retry; doubled each time.
        batch_size: queries per request; larger batches are split.
    """

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 3, backoff: float = 0.2, batch_size: int = 64):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"retrieval server URL must look like http://host:port, got {url!r}")
        if batch_size < 1 or retries < 0 or timeout <= 0:
            raise ValueError("batch_size must be >= 1, retries >= 0 and timeout > 0")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        path = parts.path.rstrip("/")
        self.path = path if path else "/retrieve"
        self.url = f"{self.scheme}://{parts.netloc}{self.path}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = batch_size
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        # Connections are per process and per thread: never pickle them.
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        # After fork() the child's thread-local still holds the parent's socket;
        # two processes talking over one connection would mix their answers.
        if conn is None or self._local.pid != os.getpid():
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop_connection()

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits for each query, from the server."""
        queries = list(queries)
        out: list[list[Hit]] = []
        for start in range(0, len(queries), self.batch_size):
            out.extend(self._retrieve(queries[start : start + self.batch_size], k))
        return out

    def health(self) -> dict[str, Any]:
        """The server's ``GET /health`` answer (raises :class:`RetrieverUnavailable` when down)."""
        base = self.path[: -len("/retrieve")] if self.path.endswith("/retrieve") else ""
        return self._request("GET", f"{base}/health", None)

    def _retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        body = json.dumps({"queries": queries, "topk": int(k), "return_scores": True}).encode("utf-8")
        return parse_retrieve_response(self._request("POST", self.path, body), len(queries))

    def _request(self, method: str, path: str, body: bytes | None) -> Any:
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            conn = self._connection()
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                status, data = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                # A stale keep-alive connection or a server that is down: reconnect and retry.
                self._drop_connection()
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.will_close:
                self._drop_connection()
            if status >= 500:
                last_error = f"HTTP {status}: {_error_message(data)}"
                continue
            if status >= 400:
                raise RetrievalRequestError(f"retrieval server at {self.url} refused the request (HTTP {status}): {_error_message(data)}")
            try:
                return json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RetrievalRequestError(f"retrieval server at {self.url} answered invalid JSON: {exc}") from None
        raise RetrieverUnavailable(
            f"retrieval server at {self.url} is unavailable after {self.retries + 1} attempts ({last_error}); "
            "start one with `mem1 serve-retriever --port PORT` or check the URL"
        )


def _error_message(data: bytes) -> str:
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data[:200].decode("utf-8", "replace")
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return json.dumps(payload)[:200]


def _factory(spec: str, corpus: Sequence[Any], fingerprint: str | None, timeout: float = 30.0, retries: int = 3) -> HttpRetriever:
    # The server owns the corpus; the local one is not needed by the client.
    return HttpRetriever(spec, timeout=timeout, retries=retries)


def register() -> None:
    """Make ``http://`` and ``https://`` retriever specs select this backend."""
    from .retrieval import register_retriever_backend

    register_retriever_backend("http", _factory)
    register_retriever_backend("https", _factory)
