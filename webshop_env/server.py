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
unknown paths answer 404, bad parameters 400, other methods 405.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from . import pages
from .http_service import HTTPService, OwnedHTTPServer
from .routes import MAX_QUERY_CHARS, Route, RouteError, parse_path
from .site import Site

#: Longest request path or form body accepted.
MAX_PATH_CHARS = 8192
MAX_BODY_BYTES = 16384
#: Sessions remembered at once (oldest forgotten first).
MAX_SESSIONS = 10_000


@dataclass
class SessionState:
    """What the server remembers of a session.

    Attributes:
        goal_index: the goal the session plays.
        purchases: (asin, options, reward) of each visit to a done page.
    """

    goal_index: int
    purchases: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    server_version = "WebShop/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Quiet by default: a load test would flood stderr.
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: str = "", location: str | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str, session: str | None = None) -> None:
        self._send(status, pages.render_error(status, message, session))

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """Serve a page."""
        owner = self.server.owner
        if len(self.path) > MAX_PATH_CHARS:
            self._error(HTTPStatus.REQUEST_URI_TOO_LONG, "the path is too long")
            return
        if self.path.split("?", 1)[0] in ("", "/"):
            self._send(HTTPStatus.FOUND, location=Route.search(uuid.uuid4().hex[:16]).path())
            return
        try:
            route = parse_path(self.path)
            state = owner.session(route.session)
            page = owner.site.render(route, owner.site.goals[state.goal_index])
        except RouteError as err:
            self._error(err.status, err.message)
            return
        if page.reward is not None:
            owner.record_purchase(route.session, route.asin, route.options, page.reward)
        self._send(HTTPStatus.OK, page.html)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        """The search form: ``POST /<session>`` with ``search_query`` redirects to the results."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the form is too large")
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            route = parse_path(self.path)
        except RouteError as err:
            self._error(err.status, err.message)
            return
        if route.kind != "search":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only the search page takes a form")
            return
        query = " ".join(" ".join(parse_qs(body).get("search_query", [""])).split()).lower()
        if not query:
            self._error(HTTPStatus.BAD_REQUEST, "the search query is empty", route.session)
            return
        if len(query) > MAX_QUERY_CHARS:
            self._error(HTTPStatus.BAD_REQUEST, f"the search query is longer than {MAX_QUERY_CHARS} characters", route.session)
            return
        self._send(HTTPStatus.SEE_OTHER, location=route.results(keywords=query, page=1).path())

    def _not_allowed(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} is not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class WebShopServer(HTTPService):
    """Serves a :class:`~webshop_env.site.Site` over HTTP (see :class:`~webshop_env.http_service.HTTPService`
    for starting, serving in the foreground and closing).

    Args:
        site: the site to serve.
        host: the address to bind; loopback by default.
        port: the port (0 picks a free one).
        verbose: log each request to stderr.
    """

    thread_name = "webshop-server"

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.site = site
        self.verbose = verbose
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._lock = threading.Lock()
        super().__init__(_Handler, host, port)

    def url_for(self, session: str) -> str:
        """The URL of ``session``'s search page."""
        return self.url + Route.search(session).path()

    def session(self, session: str) -> SessionState:
        """The state of ``session`` (created on first use, playing the goal its id selects)."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                state = self._sessions[session] = SessionState(self.site.goal_index_for_session(session))
                if len(self._sessions) > MAX_SESSIONS:
                    self._sessions.popitem(last=False)
            else:
                self._sessions.move_to_end(session)
            return state

    def record_purchase(self, session: str, asin: str, options: dict[str, str], reward: float) -> None:
        """Remember a purchase made in ``session``."""
        state = self.session(session)
        with self._lock:
            state.purchases.append((asin, dict(options), float(reward)))
