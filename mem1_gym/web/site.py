"""A local web: an HTTP server on loopback with one HTML page per passage and a search endpoint.

The default backend of ``WebSearchQA-v0`` needs no internet: the embedded
corpora become a small web site::

    GET /                  home page with a search form
    GET /wiki/<id>         the passage as an HTML page (title, text, navigation chrome)
    GET /search?q=..&k=..  JSON {"query": q, "results": [{"title", "url", "snippet"}, ...]}
    GET /health            JSON {"status": "ok", "pages": n}

Search is any :class:`~mem1_gym.retrieval.Retriever` over the corpus (bm25s by
default). Servers are shared per process through :func:`acquire_local_web` /
:func:`release_local_web`, reference-counted, so N envs in one process serve
from one index and the last ``close()`` stops the server.
"""

from __future__ import annotations

import html
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Hashable, Sequence
from urllib.parse import parse_qs, quote, unquote, urlsplit

from webshop_env.http_service import HTTPService, OwnedHTTPServer

from ..data.schema import Passage
from ..retrieval import Retriever

#: Snippet length (characters) in search results.
SNIPPET_CHARS = 160
#: Most results one search may ask for.
MAX_K = 50
_MAX_QUERY_CHARS = 2_000

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; max-width: 48em; margin: auto; }}</style>
<script>/* scripts are not page content */ var localWiki = true;</script>
</head>
<body>
<header><nav><a href="/">Local Wiki</a> | <a href="/search?q=">Search</a></nav></header>
<main>
<h1>{title}</h1>
<article>
{paragraphs}
</article>
</main>
<footer>Local Wiki, page {id}. Served by mem1-gym.</footer>
</body>
</html>
"""

_HOME = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Local Wiki</title></head>
<body><h1>Local Wiki</h1><p>{n} pages.</p>
<form action="/search" method="get"><input name="q"><input type="hidden" name="k" value="5"><button>Search</button></form>
</body></html>
"""


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` cut at a word boundary, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + " ..."


def render_page(passage: Passage) -> str:
    """The HTML page of a passage."""
    paragraphs = "\n".join(f"<p>{html.escape(p.strip())}</p>" for p in passage.text.split("\n") if p.strip())
    return _PAGE.format(
        title=html.escape(passage.title),
        id=html.escape(passage.id),
        paragraphs=paragraphs,
    )


def page_path(passage_id: str) -> str:
    """The URL path of a passage's page."""
    return "/wiki/" + quote(passage_id, safe="")


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    # Headers and body go out in two writes; with Nagle's algorithm the second
    # waits for the client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per page view would drown the training logs

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload), "application/json")

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        site = self.server.owner
        try:
            parts = urlsplit(self.path)
        except ValueError:  # e.g. "//[" parses as a broken IPv6 host
            self._send(HTTPStatus.BAD_REQUEST, "<html><body><h1>Bad request</h1></body></html>", "text/html")
            return
        path = parts.path
        if path == "/":
            self._send(HTTPStatus.OK, _HOME.format(n=len(site.pages)), "text/html")
        elif path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok", "pages": len(site.pages)})
        elif path.startswith("/wiki/"):
            passage = site.pages.get(unquote(path[len("/wiki/") :]))
            if passage is None:
                self._send(HTTPStatus.NOT_FOUND, "<html><body><h1>Not found</h1><p>No such page.</p></body></html>", "text/html")
            else:
                self._send(HTTPStatus.OK, render_page(passage), "text/html")
        elif path == "/search":
            self._search(parse_qs(parts.query))
        else:
            self._send(HTTPStatus.NOT_FOUND, "<html><body><h1>Not found</h1></body></html>", "text/html")

    def _search(self, params: dict[str, list[str]]) -> None:
        query = params.get("q", [""])[0]
        try:
            k = int(params.get("k", ["5"])[0])
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "k must be an integer"})
            return
        if not 1 <= k <= MAX_K:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"k must be between 1 and {MAX_K}"})
            return
        if len(query) > _MAX_QUERY_CHARS:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"the query is longer than {_MAX_QUERY_CHARS} characters"})
            return
        try:
            results = self.server.owner.search(query, k) if query.strip() else []
        except Exception as exc:  # the index failing is the server's fault: say so, keep serving
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"search failed: {type(exc).__name__}: {exc}"})
            return
        self._json(HTTPStatus.OK, {"query": query, "results": results})


class LocalWebServer(HTTPService):
    """Serves a corpus as a web site on loopback, from construction until :meth:`close` (see the module
    docstring and :class:`~webshop_env.http_service.HTTPService`).

    Args:
        corpus: the passages; each becomes ``/wiki/<id>``.
        retriever: answers ``/search``; called under a lock, so it need not be thread-safe.
        host: interface to bind (loopback).
        port: TCP port; 0 picks a free one.
    """

    thread_name = "local-web"

    def __init__(self, corpus: Sequence[Passage], retriever: Retriever, host: str = "127.0.0.1", port: int = 0):
        self.pages = {p.id: p for p in corpus}
        self.retriever = retriever
        self._search_lock = threading.Lock()
        super().__init__(_Handler, host, port)
        self.start()

    @property
    def netloc(self) -> str:
        """``host:port`` of the server (what the env allows pages to be opened from)."""
        return urlsplit(self.url).netloc

    def url_of(self, passage_id: str) -> str:
        """Absolute URL of a passage's page."""
        return self.url + page_path(passage_id)

    def search(self, query: str, k: int) -> list[dict[str, str]]:
        """Search results as served by ``/search``."""
        with self._search_lock:
            hits = self.retriever.search([query], k)[0]
        results = []
        for hit in hits:
            passage = self.pages.get(hit.id)
            if passage is not None:
                results.append({"title": passage.title, "url": self.url_of(passage.id), "snippet": snippet(passage.text)})
        return results


_shared_lock = threading.Lock()
#: key -> (server, reference count, pid that started it)
_shared: dict[Hashable, tuple[LocalWebServer, int, int]] = {}


def acquire_local_web(key: Hashable, build: Callable[[], tuple[Sequence[Passage], Retriever]]) -> LocalWebServer:
    """The process's local web server for ``key``, started with ``build()`` if needed; count one more user.

    A server inherited through ``fork`` has no serving thread in the child, so
    entries from another process id are ignored and a fresh server is started.
    """
    with _shared_lock:
        entry = _shared.get(key)
        if entry is not None and entry[2] == os.getpid():
            server, count, pid = entry
            _shared[key] = (server, count + 1, pid)
            return server
        corpus, retriever = build()
        server = LocalWebServer(corpus, retriever)
        _shared[key] = (server, 1, os.getpid())
        return server


def release_local_web(server: LocalWebServer) -> None:
    """One user fewer; the last one stops the server."""
    with _shared_lock:
        for key, (srv, count, pid) in list(_shared.items()):
            if srv is server and pid == os.getpid():
                if count > 1:
                    _shared[key] = (srv, count - 1, pid)
                    return
                del _shared[key]
                break
        else:
            return
    server.close()


def shared_local_webs() -> int:
    """How many shared local web servers this process runs (for tests and diagnostics)."""
    with _shared_lock:
        return sum(1 for _, _, pid in _shared.values() if pid == os.getpid())
