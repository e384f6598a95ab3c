"""The web side of ``WebSearchQA-v0``: a local web site, search backends, and bounded page fetching.

* :mod:`.site`: the loopback web server built from a corpus (pages and a search endpoint);
* :mod:`.search`: search backends (local web, SearxNG, Serper-style APIs);
* :mod:`.fetch`: HTTP fetching with timeouts, size limits, content-type checks and
  a host allow-list, and HTML-to-text with BeautifulSoup.
"""

from .fetch import PageText, WebError, fetch_page, html_to_text, truncate_text
from .search import LocalWebSearch, SearchResult, SearxNGSearch, SerperSearch, WebSearch, make_web_search
from .site import LocalWebServer, acquire_local_web, release_local_web

__all__ = [
    "LocalWebSearch",
    "LocalWebServer",
    "PageText",
    "SearchResult",
    "SearxNGSearch",
    "SerperSearch",
    "WebError",
    "WebSearch",
    "acquire_local_web",
    "fetch_page",
    "html_to_text",
    "make_web_search",
    "release_local_web",
    "truncate_text",
]
