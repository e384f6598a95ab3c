"""Fetching over HTTP with timeouts, size limits, content-type checks and a host allow-list.

Everything an agent can trigger (opening a URL, querying a search API) goes
through :func:`http_get` / :func:`http_json`, so a URL written by a policy can
never reach a host outside ``allowed_hosts``, read an unbounded body, or hang.
Failures raise :class:`WebError` with a message meant for the agent; the
environment shows it as ``<info>`` text.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Collection
from urllib.parse import urlsplit

from bs4 import BeautifulSoup

#: Content types a page may have to be turned into text.
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class WebError(Exception):
    """A fetch or search failed; the message is meant to be shown to the agent."""


@dataclass(frozen=True)
class Response:
    """A bounded HTTP response body."""

    url: str
    content_type: str
    charset: str
    body: bytes
    truncated: bool

    def text(self) -> str:
        """The body decoded with its declared charset (UTF-8 otherwise), never raising."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # unknown charset name in the header
            return self.body.decode("utf-8", errors="replace")


def host_allowed(url: str, allowed_hosts: Collection[str] | None) -> bool:
    """Whether ``url`` is http(s) and its ``host[:port]`` is allowed (``None`` allows any host)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if allowed_hosts is None:
            return True
        netloc = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    except ValueError:  # an unbalanced IPv6 bracket, a port that is not a number
        return False
    return netloc in allowed_hosts or parts.hostname in allowed_hosts


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to allowed hosts, at most ``max_redirections`` times."""

    max_redirections = 3

    def __init__(self, allowed_hosts: Collection[str] | None):
        super().__init__()
        self.allowed_hosts = allowed_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not host_allowed(newurl, self.allowed_hosts):
            raise WebError(f"the page redirects to {newurl}, which is not an allowed address")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str, allowed_hosts: Collection[str] | None) -> urllib.request.OpenerDirector:
    # Loopback traffic must not go through an HTTP proxy set in the environment.
    proxies = urllib.request.ProxyHandler({}) if urlsplit(url).hostname in _LOOPBACK else urllib.request.ProxyHandler()
    return urllib.request.build_opener(proxies, _CheckedRedirects(allowed_hosts))


def http_get(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = 1 << 20,
    allowed_hosts: Collection[str] | None = None,
    content_types: Collection[str] | None = TEXT_TYPES,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Fetch ``url``; bodies over ``max_bytes`` are cut (``truncated=True``).

    Raises:
        WebError: bad or disallowed URL, unreachable host, timeout, HTTP error
            status, or a content type outside ``content_types``.
    """
    if not host_allowed(url, allowed_hosts):
        if not url.lower().startswith(("http://", "https://")):
            raise WebError(f"cannot open {url!r}: only http:// and https:// URLs can be opened")
        raise WebError(f"cannot open {url!r}: that address is not reachable from this environment")
    request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": "mem1-gym/0.1", **(headers or {})})
    try:
        with _opener(url, allowed_hosts).open(request, timeout=timeout) as resp:
            content_type = resp.headers.get_content_type()
            charset = resp.headers.get_content_charset() or ""
            if content_types is not None and content_type not in content_types:
                raise WebError(f"{url} is {content_type}, not a text page")
            body = resp.read(max_bytes + 1)
            final_url = resp.geturl()
    except WebError:
        raise
    except urllib.error.HTTPError as exc:
        raise WebError(f"{url} answered HTTP {exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise WebError(f"{url} did not answer within {timeout} s") from None
        raise WebError(f"cannot reach {url}: {reason}") from None
    except (socket.timeout, TimeoutError):
        raise WebError(f"{url} did not answer within {timeout} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise WebError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    return Response(final_url, content_type, charset, body[:max_bytes], len(body) > max_bytes)


def http_json(url: str, *, timeout: float = 10.0, max_bytes: int = 4 << 20, **kwargs: Any) -> Any:
    """GET (or POST, with ``method``/``data``) ``url`` and decode its JSON body."""
    resp = http_get(url, timeout=timeout, max_bytes=max_bytes, content_types=None, **kwargs)
    if resp.truncated:
        raise WebError(f"{url} answered more than {max_bytes} bytes")
    try:
        return json.loads(resp.text())
    except json.JSONDecodeError as exc:
        raise WebError(f"{url} did not answer JSON: {exc}") from None


#: Elements whose text is not page content.
_DROP = ("script", "style", "noscript", "template", "svg", "nav", "footer", "header", "form", "iframe")
_BLANKS = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True)
class PageText:
    """A page turned into text."""

    url: str
    title: str
    text: str


def html_to_text(html: str, url: str = "") -> PageText:
    """Readable text of an HTML page: title, then body text without scripts, styles and navigation."""
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP):
        tag.decompose()
    if soup.head is not None:
        soup.head.decompose()
    text = soup.get_text("\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    text = _BLANKS.sub("\n\n", "\n".join(lines)).strip()
    return PageText(url=url, title=title, text=text)


def fetch_page(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = 1 << 20,
    allowed_hosts: Collection[str] | None = None,
) -> PageText:
    """Fetch an HTML (or plain-text) page and turn it into text."""
    resp = http_get(url, timeout=timeout, max_bytes=max_bytes, allowed_hosts=allowed_hosts)
    if resp.content_type == "text/plain":
        return PageText(url=resp.url, title="", text=resp.text().strip())
    return html_to_text(resp.text(), resp.url)


def truncate_text(text: str, budget: int) -> str:
    """Cut ``text`` to ``budget`` characters at a word boundary, saying how much was cut."""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ")
    if space > budget // 2:
        cut = cut[:space]
    return f"{cut} ... [page cut to {len(cut)} of {len(text)} characters]"
