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
import os
import threading
from typing import Callable, Hashable, Sequence
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mem1_http import ASGIService, HTTPError, HTTPLimits, error_handlers

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


_NOT_FOUND = "<html><body><h1>Not found</h1><p>No such page.</p></body></html>"


def _error_response(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


class LocalWebServer(ASGIService):
    """Serves a corpus as a web site on loopback, from construction until :meth:`close` (see the module
    docstring and :class:`~mem1_http.service.ASGIService`). Pages and the home page are HTML,
    everything else (search, health, errors) JSON.

    Args:
        corpus: the passages; each becomes ``/wiki/<id>``.
        retriever: answers ``/search``; called under a lock, so it need not be thread-safe.
        host: interface to bind (loopback).
        port: TCP port; 0 picks a free one.
        limits: connection-level limits (timeouts, connection cap).
    """

    thread_name = "local-web"

    def __init__(
        self, corpus: Sequence[Passage], retriever: Retriever, host: str = "127.0.0.1", port: int = 0,
        limits: HTTPLimits | None = None,
    ):
        self.pages = {p.id: p for p in corpus}
        self.retriever = retriever
        self._search_lock = threading.Lock()
        get = ["GET", "HEAD"]
        app = Starlette(
            routes=[
                Route("/", self._home, methods=get),
                Route("/health", self._health, methods=get),
                Route("/wiki/{passage_id:path}", self._page, methods=get),
                Route("/search", self._search, methods=get),
            ],
            exception_handlers=error_handlers(_error_response),
        )
        super().__init__(app, host, port, limits=limits)
        self.start()

    async def _home(self, request: Request) -> Response:
        return HTMLResponse(_HOME.format(n=len(self.pages)))

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "pages": len(self.pages)})

    async def _page(self, request: Request) -> Response:
        passage = self.pages.get(request.path_params["passage_id"])
        if passage is None:
            return HTMLResponse(_NOT_FOUND, status_code=404)
        return HTMLResponse(render_page(passage))

    async def _search(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        try:
            k = int(request.query_params.get("k", "5"))
        except ValueError:
            raise HTTPError(400, "k must be an integer") from None
        if not 1 <= k <= MAX_K:
            raise HTTPError(400, f"k must be between 1 and {MAX_K}")
        if len(query) > _MAX_QUERY_CHARS:
            raise HTTPError(400, f"the query is longer than {_MAX_QUERY_CHARS} characters")
        try:
            results = await run_in_threadpool(self.search, query, k) if query.strip() else []
        except Exception as exc:  # the index failing is the server's fault: say so, keep serving
            raise HTTPError(500, f"search failed: {type(exc).__name__}: {exc}") from None
        return JSONResponse({"query": query, "results": results})

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
