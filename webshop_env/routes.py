"""URLs of the WebShop site, built and parsed in one place.

Every page of the site is addressed by a :class:`Route`. The in-process
engine keeps a :class:`Route` as its state and follows the links of the page
it rendered; the HTTP server parses the request path into a :class:`Route`;
the browser env reads the browser's URL back into one. Because all three go
through :meth:`Route.path` and :func:`parse_path`, the page graph is the same
everywhere.

Paths mirror the original WebShop site::

    /<session>                                                    search page
    /search_results/<session>/<keywords>/<page>                   results
    /item_page/<session>/<asin>/<keywords>/<page>/<options>       item
    /item_sub_page/<session>/<asin>/<keywords>/<page>/<sub>/<options>
    /done/<session>/<asin>/<options>                              purchase

``keywords`` is the lower-cased query, ``options`` a JSON object of the
selected option values; both are percent-encoded path segments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote, unquote

PageKind = Literal["search", "results", "item", "sub_page", "done"]

#: Sub-pages of an item page, by the label of the button that opens them.
SUB_PAGES = ("Description", "Features", "Reviews")
#: Session ids: letters, digits, ``-`` and ``_`` (keeps them safe in a path and a log line).
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Longest query (in characters) a search may carry.
MAX_QUERY_CHARS = 500
#: Longest options segment accepted in a URL.
MAX_OPTIONS_CHARS = 4000


class RouteError(ValueError):
    """A path that names no page of the site; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    """One page of the site and the parameters that select it.

    Attributes:
        kind: which page.
        session: the session id (selects the goal).
        keywords: the search query the results came from ('' on the search page).
        page: the results page number (1-based).
        asin: the product shown (item, sub-page, done).
        sub_page: ``Description``, ``Features`` or ``Reviews`` (sub-page only).
        options: option name -> selected value.
    """

    kind: PageKind
    session: str
    keywords: str = ""
    page: int = 1
    asin: str = ""
    sub_page: str = ""
    options: dict[str, str] = field(default_factory=dict)

    # -- constructors for the links of each page --------------------------------

    @classmethod
    def search(cls, session: str) -> "Route":
        """The search page of ``session``."""
        return cls("search", session)

    def results(self, keywords: str | None = None, page: int | None = None) -> "Route":
        """The results page for ``keywords`` (default: this route's) at ``page``."""
        return Route(
            "results",
            self.session,
            keywords=self.keywords if keywords is None else keywords,
            page=self.page if page is None else page,
        )

    def item(self, asin: str | None = None, options: dict[str, str] | None = None) -> "Route":
        """The item page of ``asin`` (default: this route's product) with ``options`` selected."""
        return Route(
            "item",
            self.session,
            keywords=self.keywords,
            page=self.page,
            asin=self.asin if asin is None else asin,
            options=dict(self.options if options is None else options),
        )

    def with_option(self, name: str, value: str) -> "Route":
        """This item page with option ``name`` set to ``value``."""
        return self.item(options={**self.options, name: value})

    def sub(self, sub_page: str) -> "Route":
        """A sub-page (description, features, reviews) of this item."""
        return replace(self.item(), kind="sub_page", sub_page=sub_page)

    def done(self) -> "Route":
        """The purchase page of this item with its selected options."""
        return Route("done", self.session, asin=self.asin, options=dict(self.options))

    # -- URL form -----------------------------------------------------------------

    def path(self) -> str:
        """The URL path of this page (percent-encoded)."""
        s = _seg(self.session)
        if self.kind == "search":
            return f"/{s}"
        if self.kind == "results":
            return f"/search_results/{s}/{_seg(self.keywords)}/{self.page}"
        opts = _seg(json.dumps(self.options, sort_keys=True, ensure_ascii=False))
        if self.kind == "item":
            return f"/item_page/{s}/{_seg(self.asin)}/{_seg(self.keywords)}/{self.page}/{opts}"
        if self.kind == "sub_page":
            return f"/item_sub_page/{s}/{_seg(self.asin)}/{_seg(self.keywords)}/{self.page}/{_seg(self.sub_page)}/{opts}"
        return f"/done/{s}/{_seg(self.asin)}/{opts}"


def _seg(text: str) -> str:
    # An empty segment would collapse two slashes, so it is spelled as one space.
    return quote(text or " ", safe="")


def _session(raw: str) -> str:
    if not SESSION_RE.match(raw):
        raise RouteError(400, "a session id is 1-64 letters, digits, '-' or '_'")
    return raw


def _page(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise RouteError(400, f"page must be a positive integer, got {raw[:20]!r}")
    return int(raw)


def _keywords(raw: str) -> str:
    text = raw.strip()
    if len(text) > MAX_QUERY_CHARS:
        raise RouteError(400, f"the query is longer than {MAX_QUERY_CHARS} characters")
    return text


def _options(raw: str) -> dict[str, str]:
    if len(raw) > MAX_OPTIONS_CHARS:
        raise RouteError(400, "the options segment is too long")
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        raise RouteError(400, "options must be a JSON object of option name -> value") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise RouteError(400, "options must be a JSON object of option name -> value")
    return value


def parse_path(path: str) -> Route:
    """Parse a URL path (query string ignored) into a :class:`Route`.

    Raises:
        RouteError: 404 for a path that names no page, 400 for bad parameters.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    try:
        parts = [unquote(p, errors="strict") for p in path.strip("/").split("/")]
    except UnicodeDecodeError:
        raise RouteError(400, "the path is not valid percent-encoded UTF-8") from None
    if len(parts) == 1 and parts[0]:
        return Route.search(_session(parts[0]))
    head, args = parts[0], parts[1:]
    if head == "search_results" and len(args) == 3:
        return Route("results", _session(args[0]), keywords=_keywords(args[1]), page=_page(args[2]))
    if head == "item_page" and len(args) == 5:
        return Route(
            "item", _session(args[0]), asin=args[1].strip(), keywords=_keywords(args[2]),
            page=_page(args[3]), options=_options(args[4]),
        )
    if head == "item_sub_page" and len(args) == 6:
        if args[4] not in SUB_PAGES:
            raise RouteError(404, f"unknown sub-page {args[4][:40]!r}; one of {', '.join(SUB_PAGES)}")
        return Route(
            "sub_page", _session(args[0]), asin=args[1].strip(), keywords=_keywords(args[2]),
            page=_page(args[3]), sub_page=args[4], options=_options(args[5]),
        )
    if head == "done" and len(args) == 3:
        return Route("done", _session(args[0]), asin=args[1].strip(), options=_options(args[2]))
    raise RouteError(404, "no such page")
