"""The WebShop site over HTTP, for browsers (and the Selenium env).

Routes mirror the original site (see :mod:`webshop_env.routes`); pages come
from the same :class:`~webshop_env.site.Site` and templates as the in-process
env. Each session id in the URL plays its own goal (``<name>_<n>`` plays goal
``n``); the server keeps per-session purchases apart under concurrent use.

Example::

    with WebShopServer(Site.from_config(SiteConfig(num_products=100))) as server:
        print(server.url_for("fixed_0"))    # http://127.0.0.1:<port>/fixed_0

Requests: ``GET /`` redirects to a fresh session; ``GET /<session>`` is the search
page; ``POST /<session>`` (form field ``search_query``) redirects to the results;
unknown paths answer 404, bad parameters 400, other methods 405 (HTML error pages,
like the rest of the site). The server remembers at most ``max_sessions`` sessions
and ``max_purchases`` purchases per session, so a client cannot grow it without bound.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route as Endpoint

from mem1_http import ASGIService, HTTPError, HTTPLimits, error_handlers, read_body

from . import pages
from .reward import spacy_pipeline
from .routes import MAX_QUERY_CHARS, Route, RouteError, parse_path
from .site import RenderedPage, Site

#: Longest request path or form body accepted.
MAX_PATH_CHARS = 8192
MAX_BODY_BYTES = 16384
#: Sessions remembered at once (the least recently used is forgotten first).
MAX_SESSIONS = 10_000
#: Purchases remembered per session (the oldest is forgotten first).
MAX_PURCHASES = 100


@dataclass
class SessionState:
    """What the server remembers of a session.

    Attributes:
        goal_index: the goal the session plays.
        purchases: (asin, options, reward) of the latest visits to a done page, oldest first
            (at most the server's ``max_purchases``).
    """

    goal_index: int
    purchases: deque[tuple[str, dict[str, str], float]] = field(default_factory=lambda: deque(maxlen=MAX_PURCHASES))


def _page_response(status: int, html: str) -> Response:
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error_response(status: int, message: str) -> Response:
    return _page_response(status, pages.render_error(status, message, None))


class WebShopServer(ASGIService):
    """Serves a :class:`~webshop_env.site.Site` over HTTP on uvicorn (see
    :class:`~mem1_http.service.ASGIService` for starting, serving in the foreground and closing).

    Args:
        site: the site to serve.
        host: the address to bind; loopback by default.
        port: the port (0 picks a free one).
        verbose: log each request to stderr.
        max_sessions: sessions remembered at once (least recently used forgotten first).
        max_purchases: purchases remembered per session (oldest forgotten first).
        limits: connection-level limits (timeouts, connection cap).
    """

    thread_name = "webshop-server"

    def __init__(
        self,
        site: Site,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        max_sessions: int = MAX_SESSIONS,
        max_purchases: int = MAX_PURCHASES,
        limits: HTTPLimits | None = None,
    ):
        if max_sessions < 1 or max_purchases < 1:
            raise ValueError("max_sessions and max_purchases must be at least 1")
        self.site = site
        self.verbose = verbose
        self.max_sessions = max_sessions
        self.max_purchases = max_purchases
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._lock = threading.Lock()
        app = Starlette(
            routes=[Endpoint("/{path:path}", self._endpoint, methods=["GET", "HEAD", "POST"])],
            exception_handlers=error_handlers(_error_response),
        )
        spacy_pipeline()  # load the type-factor tagger now, not inside the first purchase's request
        super().__init__(app, host, port, limits=limits, verbose=verbose)

    def url_for(self, session: str) -> str:
        """The URL of ``session``'s search page."""
        return self.url + Route.search(session).path()

    def session(self, session: str) -> SessionState:
        """The state of ``session`` (created on first use, playing the goal its id selects)."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                state = SessionState(self.site.goal_index_for_session(session), deque(maxlen=self.max_purchases))
                self._sessions[session] = state
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            else:
                self._sessions.move_to_end(session)
            return state

    def sessions(self) -> int:
        """How many sessions the server remembers now."""
        with self._lock:
            return len(self._sessions)

    def record_purchase(self, session: str, asin: str, options: dict[str, str], reward: float) -> None:
        """Remember a purchase made in ``session``."""
        state = self.session(session)
        with self._lock:
            state.purchases.append((asin, dict(options), float(reward)))

    async def _endpoint(self, request: Request) -> Response:
        # The site's routes live in webshop_env.routes (shared with the in-process env and the
        # browser env), so they are parsed from the raw, still percent-encoded path.
        path = request.scope["raw_path"].decode("latin-1")
        if len(path) > MAX_PATH_CHARS:
            raise HTTPError(414, "the path is too long")
        if request.method == "POST":
            return await self._search_form(request, path)
        if path in ("", "/"):
            return RedirectResponse(Route.search(uuid.uuid4().hex[:16]).path(), status_code=302, headers={"Cache-Control": "no-store"})
        try:
            page = await run_in_threadpool(self._render, path)
        except RouteError as err:
            raise HTTPError(err.status, err.message) from None
        return _page_response(200, page.html)

    def _render(self, path: str) -> RenderedPage:
        route = parse_path(path)
        state = self.session(route.session)
        page = self.site.render(route, self.site.goals[state.goal_index])
        if page.reward is not None:
            self.record_purchase(route.session, route.asin, route.options, page.reward)
        return page

    async def _search_form(self, request: Request, path: str) -> Response:
        """The search form: ``POST /<session>`` with ``search_query`` redirects to the results."""
        body = (await read_body(request, MAX_BODY_BYTES, self.http_limits.body_timeout)).decode("utf-8", errors="replace")
        try:
            route = parse_path(path)
        except RouteError as err:
            raise HTTPError(err.status, err.message) from None
        if route.kind != "search":
            raise HTTPError(405, "only the search page takes a form")
        query = " ".join(" ".join(parse_qs(body).get("search_query", [""])).split()).lower()
        if not query:
            return _page_response(400, pages.render_error(400, "the search query is empty", route.session))
        if len(query) > MAX_QUERY_CHARS:
            message = f"the search query is longer than {MAX_QUERY_CHARS} characters"
            return _page_response(400, pages.render_error(400, message, route.session))
        return RedirectResponse(route.results(keywords=query, page=1).path(), status_code=303, headers={"Cache-Control": "no-store"})
