"""An HTTP service: a threaded stdlib server that runs on a background thread or in the foreground.

The project's servers (the WebShop site, the retrieval server, the local web site, the policy
server) share this life cycle; each subclass only sets up its state and names its request handler::

    class EchoService(HTTPService):
        def __init__(self, host="127.0.0.1", port=0):
            self.greeting = "hi"
            super().__init__(EchoHandler, host, port)   # handlers read self.server.owner.greeting

    with EchoService() as service:      # serving on a daemon thread
        urllib.request.urlopen(service.url)
    EchoService(port=8000).serve_until_interrupted("serving on :8000")   # a CLI, until Ctrl-C
"""

from __future__ import annotations

import operator
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def check_port(port: object) -> int:
    """``port`` as an int if it is a TCP port number (0 picks a free one); a clear ``ValueError`` otherwise."""
    try:
        value = operator.index(port)  # ints and numpy ints; not floats or strings
    except TypeError:
        value = -1
    if isinstance(port, bool) or not 0 <= value <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535 (0 picks a free one), got {port!r}")
    return value


class OwnedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose handlers reach their service as ``self.server.owner``."""

    daemon_threads = True
    owner: "HTTPService"


class HTTPService:
    """Binds on construction; :meth:`start` serves on a daemon thread, :meth:`serve_forever` on the
    calling thread; :meth:`close` stops and releases the port. A context manager (start / close).

    Args:
        handler: the request handler class.
        host: the address to bind; loopback by default.
        port: the port (0 picks a free one).
        backlog: pending connections the socket queues; the stdlib default (5) resets
            connections when many clients (or a browser) burst.
        poll_interval: how often the serving loop checks for shutdown, in seconds.
    """

    thread_name = "http-service"

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 128,
        poll_interval: float = 0.05,
    ):
        httpd = OwnedHTTPServer((host, check_port(port)), handler, bind_and_activate=False)
        httpd.request_queue_size = backlog
        try:
            httpd.server_bind()
            httpd.server_activate()
        except OSError:
            httpd.server_close()
            raise
        httpd.owner = self
        self.httpd = httpd
        self.poll_interval = poll_interval
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Any:
        """Serve on a daemon thread (once); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, kwargs={"poll_interval": self.poll_interval},
                name=self.thread_name, daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        self.httpd.serve_forever(poll_interval=self.poll_interval)

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
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
