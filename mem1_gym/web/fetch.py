"""Fetching over HTTP with a total deadline, size limits, content-type checks and an address policy.

Everything an agent can trigger (opening a URL, querying a search API) goes
through :func:`http_get` / :func:`http_json`. Secure by default:

* **addresses**: every hop (the URL and each redirect, followed here, never by
  a library) is resolved once, and the connection goes to that very address
  (with the name in the ``Host`` header and TLS SNI), so DNS rebinding cannot
  swap in another. Loopback, private, link-local, multicast, reserved,
  unspecified and other non-global addresses are refused unless the caller
  opts in (``allow_private=True``, or an IP-literal / ``localhost`` entry in
  ``allowed_hosts``); a name resolving to any such address is refused whole.
* **URLs**: only ``http``/``https``, no ``user:password@`` part, and, when
  ``allowed_hosts`` is given, only those hosts (``host`` or ``host:port``).
* **time**: ``timeout`` is a total deadline for the whole fetch (resolution,
  connection, redirects, headers and body); a watchdog closes the socket when
  it passes, so a server dripping bytes cannot hold a step longer.
* **size**: bodies are read up to ``max_bytes`` and cut there.

Connections go straight to the checked address: proxies from the environment
are not used. Failures raise :class:`WebError` with a message meant for the
agent; the environment shows it as ``<info>`` text.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Collection
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

#: Content types a page may have to be turned into text.
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
#: Redirects followed per fetch.
MAX_REDIRECTS = 3
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_CHUNK = 1 << 16


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


def address_kind(address: str) -> str | None:
    """Why ``address`` (an IP) is not a public one (``"loopback"``, ``"private"``, ...), or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT)
        return "non-global"
    return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    opted_in: bool  # the caller named this address explicitly


def _check_url(url: str, allowed_hosts: Collection[str] | None) -> _Target:
    """Parse ``url`` and apply the URL rules (scheme, userinfo, allow-list)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:  # an unbalanced IPv6 bracket, a port that is not a number
        raise WebError(f"cannot open {url!r}: it is not a valid URL, so not reachable from this environment") from None
    if parts.scheme not in ("http", "https"):
        raise WebError(f"cannot open {url!r}: only http:// and https:// URLs can be opened")
    if not host:
        raise WebError(f"cannot open {url!r}: the URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebError(f"cannot open {url!r}: URLs with a user name or password are not opened")
    port = port or (443 if parts.scheme == "https" else 80)
    names = {host, f"{host}:{port}", f"[{host}]:{port}"}
    if allowed_hosts is not None and not names & set(allowed_hosts):
        raise WebError(f"cannot open {url!r}: that address is not reachable from this environment")
    opted_in = allowed_hosts is not None and (host == "localhost" or _is_ip_literal(host))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(parts.scheme, host, port, path, opted_in)


def _resolve(target: _Target, url: str, allow_private: bool, deadline: float) -> list[str]:
    """The addresses to connect to, in order, resolved once; refused when any address of the name is not allowed."""
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    # getaddrinfo has no timeout of its own: wait for it at most until the deadline.
    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise WebError(f"cannot reach {url}: resolving {target.host} took too long")
    if "error" in box:
        raise WebError(f"cannot reach {url}: {box['error']}")
    addresses = [info[4][0] for info in box["infos"]]
    if not addresses:
        raise WebError(f"cannot reach {url}: {target.host} has no address")
    if not (allow_private or target.opted_in):
        for address in addresses:
            kind = address_kind(address)
            if kind is not None:
                raise WebError(
                    f"cannot open {url!r}: {target.host} is a {kind} address ({address}), "
                    "not reachable from this environment"
                )
    return list(dict.fromkeys(addresses))  # every checked address, in the resolver's order


def _connect_any(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A connection to the first of ``addresses`` that accepts one (as urllib tries every resolved address:
    ``localhost`` may resolve to ``::1`` first while a server listens on 127.0.0.1 only)."""
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a resolved address while speaking to the host by name."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self.raw_sock: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.raw_sock = _connect_any(self.addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """:class:`_PinnedHTTPConnection` with TLS: the certificate is checked against the host name (SNI)."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.addresses = addresses
        self.raw_sock: socket.socket | None = None

    def connect(self) -> None:
        self.raw_sock = _connect_any(self.addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(self.raw_sock, server_hostname=self.host)


def _abort(conn: _PinnedHTTPConnection | _PinnedHTTPSConnection, fired: threading.Event) -> None:
    """The deadline passed: shut the socket so that any blocked read or write returns now."""
    fired.set()
    sock = conn.raw_sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def http_get(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = 1 << 20,
    allowed_hosts: Collection[str] | None = None,
    allow_private: bool = False,
    content_types: Collection[str] | None = TEXT_TYPES,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Fetch ``url`` under the module's policy; bodies over ``max_bytes`` are cut (``truncated=True``).

    Args:
        timeout: total seconds for the whole fetch, redirects included.
        allowed_hosts: ``host`` / ``host:port`` values that may be fetched (None: any host).
        allow_private: also reach loopback, private, link-local, ... addresses.

    Raises:
        WebError: bad or disallowed URL or address, unreachable host, deadline passed,
            HTTP error status, too many redirects, or a content type outside ``content_types``.
    """
    deadline = time.monotonic() + timeout
    for hop in range(MAX_REDIRECTS + 1):
        try:
            target = _check_url(url, allowed_hosts)
            addresses = _resolve(target, url, allow_private, deadline)
        except WebError as err:
            if hop == 0:
                raise
            raise WebError(f"the page redirects to {url}, which is not an allowed address ({err})") from None
        status, location, resp = _exchange(target, addresses, url, method, data, headers, timeout, deadline, max_bytes, content_types)
        if resp is not None:
            return resp
        assert location is not None
        url = urljoin(url, location)
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, data = "GET", None
    raise WebError(f"{url} redirects more than {MAX_REDIRECTS} times")


def _exchange(
    target: _Target,
    addresses: list[str],
    url: str,
    method: str,
    data: bytes | None,
    headers: dict[str, str] | None,
    timeout: float,
    deadline: float,
    max_bytes: int,
    content_types: Collection[str] | None,
) -> tuple[int, str | None, Response | None]:
    """One request/response: (status, redirect location, response); the response is None for a redirect."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WebError(f"{url} did not answer within {timeout} s")
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = cls(target.host, target.port, addresses, timeout=remaining)
    fired = threading.Event()
    answered = False
    watchdog = threading.Timer(remaining, _abort, args=(conn, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(method, target.path, body=data, headers={"User-Agent": "mem1-gym/0.1", **(headers or {})})
        resp = conn.getresponse()
        if fired.is_set():  # the socket was shut mid-headers: what was parsed is not an answer
            raise WebError(f"{url} did not answer within {timeout} s")
        answered = True
        if resp.status in _REDIRECT_CODES and resp.getheader("Location"):
            return resp.status, resp.getheader("Location"), None
        if resp.status >= 400:
            raise WebError(f"{url} answered HTTP {resp.status} ({resp.reason})")
        content_type = resp.msg.get_content_type()
        charset = resp.msg.get_content_charset() or ""
        if content_types is not None and content_type not in content_types:
            raise WebError(f"{url} is {content_type}, not a text page")
        body = bytearray()
        while len(body) <= max_bytes:
            # read1 returns what one receive brings, so the deadline is checked between drips.
            chunk = resp.read1(min(_CHUNK, max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if fired.is_set():
                break
        if fired.is_set():
            raise WebError(f"{url} did not send its page within {timeout} s")
        return resp.status, None, Response(url, content_type, charset, bytes(body[:max_bytes]), len(body) > max_bytes)
    except WebError:
        raise
    except (socket.timeout, TimeoutError):
        raise WebError(f"{url} did not answer within {timeout} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if fired.is_set():
            what = "send its page" if answered else "answer"
            raise WebError(f"{url} did not {what} within {timeout} s") from None
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
            raise WebError(f"cannot reach {url}: {exc}") from None
        raise WebError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        conn.close()


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
    allow_private: bool = False,
) -> PageText:
    """Fetch an HTML (or plain-text) page (see :func:`http_get` for the policy) and turn it into text."""
    resp = http_get(url, timeout=timeout, max_bytes=max_bytes, allowed_hosts=allowed_hosts, allow_private=allow_private)
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
