"""Web search backends: the local web, SearxNG and Serper-style APIs, behind one interface.

A backend answers ``search(query, k)`` with :class:`SearchResult` s (title,
URL, snippet). Chosen by a spec string (:func:`make_web_search`):

* ``local``: the loopback local web (:mod:`mem1_gym.web.site`), no internet;
* ``searxng:http://host:port``: a SearxNG instance's JSON API
  (``GET /search?q=...&format=json``, results ``title``/``url``/``content``);
* ``serper`` or ``serper:ENV_VAR``: a Serper-style API (``POST`` JSON
  ``{"q", "num"}`` with the key in the ``X-API-KEY`` header, results in
  ``organic`` with ``title``/``link``/``snippet``); the key is read from the
  environment variable (``SERPER_API_KEY`` by default), never from a file.

A backend's requests go only to its own configured host (at whatever address the
user chose, loopback included); redirects elsewhere are refused. Failures raise
:class:`~mem1_gym.web.fetch.WebError` with a message for the agent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit

from .fetch import WebError, http_json


@dataclass(frozen=True)
class SearchResult:
    """One web search result."""

    title: str
    url: str
    snippet: str


@runtime_checkable
class WebSearch(Protocol):
    """Anything answering ``search(query, k)`` with ranked results."""

    def search(self, query: str, k: int) -> list[SearchResult]:
        """Up to ``k`` results for ``query``, best first."""
        ...


def _results(payload: Any, list_key: str, url_key: str, snippet_key: str, source: str, k: int) -> list[SearchResult]:
    """Read ``payload[list_key]`` entries into results, skipping entries without a URL."""
    if not isinstance(payload, dict) or not isinstance(payload.get(list_key), list):
        raise WebError(f"{source} answered without a '{list_key}' list")
    out = []
    for entry in payload[list_key]:
        if not isinstance(entry, dict) or not isinstance(entry.get(url_key), str):
            continue
        out.append(SearchResult(str(entry.get("title") or ""), entry[url_key], str(entry.get(snippet_key) or "")))
        if len(out) == k:
            break
    return out


def _own_host(url: str) -> dict[str, Any]:
    """Fetch options for a backend's own, user-configured URL: that host only, at any address
    (a SearxNG on loopback is common); redirects elsewhere are refused."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"allowed_hosts": {f"{parts.hostname}:{port}"}, "allow_private": True}


def _base(url: str) -> str:
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"a search API base URL must look like http://host:port, got {url!r}")
    return url.rstrip("/")


class LocalWebSearch:
    """Searches the local web's ``/search`` endpoint over HTTP."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = _base(base_url)
        self.timeout = timeout

    def search(self, query: str, k: int) -> list[SearchResult]:
        """Results from ``GET /search?q=...&k=...``."""
        url = f"{self.base_url}/search?{urlencode({'q': query, 'k': k})}"
        return _results(http_json(url, timeout=self.timeout, **_own_host(url)), "results", "url", "snippet", "the local web", k)


class SearxNGSearch:
    """A SearxNG instance's JSON API (the instance must enable the ``json`` format)."""

    def __init__(self, base_url: str, timeout: float = 10.0, **params: str):
        self.base_url = _base(base_url)
        self.timeout = timeout
        #: Extra query parameters, e.g. ``categories="general"``, ``language="en"``.
        self.params = params

    def search(self, query: str, k: int) -> list[SearchResult]:
        """Results from ``GET /search?q=...&format=json``."""
        url = f"{self.base_url}/search?{urlencode({'q': query, 'format': 'json', **self.params})}"
        payload = http_json(url, timeout=self.timeout, **_own_host(url))
        return _results(payload, "results", "url", "content", f"SearxNG at {self.base_url}", k)


class SerperSearch:
    """A Serper-style search API; the key comes from the environment variable ``api_key_env``."""

    def __init__(self, api_key_env: str = "SERPER_API_KEY", endpoint: str = "https://google.serper.dev/search", timeout: float = 10.0):
        self.api_key_env = api_key_env
        self.endpoint = _base(endpoint)
        self.timeout = timeout
        if not os.environ.get(api_key_env):
            raise ValueError(f"the Serper search backend needs an API key in the environment variable {api_key_env}")

    def search(self, query: str, k: int) -> list[SearchResult]:
        """Results from ``POST {"q": query, "num": k}``."""
        key = os.environ.get(self.api_key_env, "")
        payload = http_json(
            self.endpoint,
            timeout=self.timeout,
            method="POST",
            data=json.dumps({"q": query, "num": int(k)}).encode("utf-8"),
            headers={"X-API-KEY": key, "Content-Type": "application/json"},
            **_own_host(self.endpoint),
        )
        return _results(payload, "organic", "link", "snippet", "the Serper API", k)


def make_web_search(spec: str | WebSearch, local_base_url: str | None = None, timeout: float = 10.0) -> WebSearch:
    """Build a backend from a spec (see the module docstring); instances pass through."""
    if not isinstance(spec, str):
        return spec
    name, _, arg = spec.partition(":")
    if name == "local":
        if local_base_url is None:
            raise ValueError("the local web search backend needs the local web's URL")
        return LocalWebSearch(local_base_url, timeout=timeout)
    if name == "searxng":
        if not arg:
            raise ValueError("write the SearxNG backend as 'searxng:http://host:port'")
        return SearxNGSearch(arg, timeout=timeout)
    if name == "serper":
        return SerperSearch(api_key_env=arg or "SERPER_API_KEY", timeout=timeout)
    raise ValueError(f"unknown web search backend {spec!r}; use 'local', 'searxng:URL' or 'serper[:ENV_VAR]'")
