"""An ASGI service: a Starlette app served by uvicorn on a background thread or in the foreground.

The project's servers (the WebShop site, the retrieval server, the local web site, the policy
server) share this life cycle; each builds its Starlette app and hands it over::

    app = Starlette(routes=[Route("/hi", hello)], exception_handlers=error_handlers(render_error))
    with ASGIService(app) as service:          # serving on a daemon thread, port picked freely
        urllib.request.urlopen(service.url + "/hi")
    ASGIService(app, port=8000).serve_until_interrupted("serving on :8000")   # a CLI, until Ctrl-C

What a client may do is bounded by :class:`HTTPLimits`: request headers must arrive within
``header_timeout`` (uvicorn itself only times out idle keep-alive connections, so a client
trickling header bytes would otherwise hold its connection forever), bodies within
``body_timeout`` and ``max_body_bytes`` (see :mod:`mem1_http.request_body`), and at most
``max_connections`` connections are served at once (uvicorn's ``limit_concurrency``: the
next request is answered 503). Requests the HTTP parser cannot read get a JSON 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import h11
import uvicorn
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from .request_body import HTTPError


def check_port(port: object) -> int:
    """``port`` as an int if it is a TCP port number (0 picks a free one); a clear ``ValueError`` otherwise."""
    try:
        value = operator.index(port)  # ints and numpy ints; not floats or strings
    except TypeError:
        value = -1
    if isinstance(port, bool) or not 0 <= value <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535 (0 picks a free one), got {port!r}")
    return value


@dataclass(frozen=True)
class HTTPLimits:
    """What one client may hold or send.

    Attributes:
        header_timeout: seconds from a connection's first byte (or its previous answer) to the
            end of the request headers; then 408 and the connection closes.
        body_timeout: seconds for a whole request body to arrive (408 after).
        keep_alive_timeout: seconds an idle keep-alive connection stays open.
        max_header_bytes: largest request line plus headers (h11's incomplete-event limit; 400 over it).
        max_connections: connections served at once; a request beyond it is answered 503.
        max_body_bytes: largest request body (413 over it).
        max_json_depth: deepest nesting of lists/objects in a JSON body (400 over it).
        shutdown_timeout: seconds :meth:`ASGIService.close` waits for requests in progress.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 512
    max_body_bytes: int = 1 << 20
    max_json_depth: int = 32
    shutdown_timeout: float = 5.0


def _raw_json_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Config(uvicorn.Config):
    """uvicorn's configuration plus the header deadline our protocol enforces."""

    def __init__(self, app: Any, header_timeout: float, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout


class _TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request headers and JSON answers to garbage.

    The deadline runs while the parser waits for a request (h11's client state ``IDLE``):
    from the connection's start, and again from the first byte after an answer (uvicorn's
    keep-alive timer covers the idle time in between).
    """

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # Between requests the keep-alive timer rules; ours starts again with the next byte.
        self._cancel_header_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.config.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            message = f"the request headers did not arrive within {self.config.header_timeout:g} s"
            self.transport.write(_raw_json_response(408, "Request Timeout", message))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers text/plain; the project's servers answer JSON everywhere.
        self.transport.write(_raw_json_response(400, "Bad Request", f"the HTTP request could not be parsed: {msg}"))
        self.transport.close()


def error_handlers(render: Callable[[int, str], Response]) -> dict[Any, Callable[[Request, Exception], Response]]:
    """Starlette ``exception_handlers`` that answer every error with ``render(status, message)``:
    routing errors (404, 405), :class:`~mem1_http.request_body.HTTPError`, and any other
    exception as a 500 (the server keeps serving)."""

    def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path}; use {allowed}"
        elif exc.status_code == 404:
            message = f"no such endpoint {request.url.path!r}"
        else:
            message = str(exc.detail)
        response = render(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        response = render(exc.status, exc.message)
        if exc.close:
            response.headers["connection"] = "close"
        return response

    def server_error(request: Request, exc: Exception) -> Response:
        return render(500, f"internal error: {type(exc).__name__}: {exc}")

    return {HTTPException: http_exception, HTTPError: http_error, Exception: server_error}


class ASGIService:
    """Binds on construction; :meth:`start` serves on a daemon thread, :meth:`serve_forever` on
    the calling thread; :meth:`close` stops (waiting up to ``limits.shutdown_timeout`` for
    requests in progress) and releases the port. A context manager (start / close).

    Args:
        app: the ASGI application (a Starlette app).
        host: the address to bind; loopback by default.
        port: the port (0 picks a free one; :attr:`port` reads it back).
        limits: timeouts and caps (see :class:`HTTPLimits`); kept as :attr:`http_limits`.
        verbose: log each request to stderr.
        backlog: pending connections the socket queues.
    """

    thread_name = "asgi-service"

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: HTTPLimits | None = None,
        verbose: bool = False,
        backlog: int = 256,
    ):
        self.http_limits = limits or HTTPLimits()
        family, kind, proto, _, _ = socket.getaddrinfo(host, check_port(port), type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        # proto must say TCP: asyncio turns Nagle's algorithm off only on sockets that do, and with
        # it on, each keep-alive answer (headers and body written apart) waits ~40 ms for an ACK.
        sock = socket.socket(family, kind, proto)
        try:
            # Like the stdlib HTTP server: a restarted server can bind its port again at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, check_port(port)))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._address = sock.getsockname()[:2]
        config = _Config(
            app,
            header_timeout=self.http_limits.header_timeout,
            http=_TimedH11Protocol,
            ws="none",
            lifespan="off",
            proxy_headers=False,  # no proxy in front: X-Forwarded-* come from the client
            server_header=False,
            timeout_keep_alive=self.http_limits.keep_alive_timeout,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=self.http_limits.max_header_bytes,
            limit_concurrency=self.http_limits.max_connections,
            timeout_graceful_shutdown=self.http_limits.shutdown_timeout,  # type: ignore[arg-type]
            backlog=backlog,
            access_log=verbose,
            # uvicorn's logging setup only when asked to log: otherwise the host program's stays as it is.
            log_config=LOGGING_CONFIG if verbose else None,
            log_level=logging.INFO if verbose else logging.WARNING,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> Any:
        """Serve on a daemon thread (once) and return self once the server accepts requests."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
            deadline = time.monotonic() + 60
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the server at {self.url} did not start: {self._error!r}")
                time.sleep(0.005)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (Ctrl-C raises KeyboardInterrupt after a clean stop)."""
        self._server.run(sockets=[self._socket])

    def serve_until_interrupted(self, banner: str) -> None:
        """What a ``serve`` command does: print ``banner``, serve until Ctrl-C, then close."""
        print(banner, flush=True)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=self.http_limits.shutdown_timeout + 10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
