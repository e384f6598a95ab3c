"""The project's HTTP serving layer: Starlette apps on uvicorn, with limits on what a client may send.

The lowest layer of the project (it imports none of ``webshop_env``, ``mem1_gym`` or
``mem1_agent``, and never torch), so the WebShop site, the retrieval server, the local web
and the policy server all build on it:

* :class:`~mem1_http.service.ASGIService` runs an ASGI app on uvicorn, on a background
  thread (tests, envs) or in the foreground (the ``serve`` commands), with header, body
  and keep-alive timeouts and a cap on concurrent connections;
* :mod:`mem1_http.request_body` reads request bodies and JSON within size, time and
  nesting-depth limits, raising :class:`~mem1_http.request_body.HTTPError` otherwise;
* :func:`~mem1_http.thread_signal.thread_signal` lets a handler await work done on a
  worker thread (the retriever's, the model's) without blocking a thread itself.
"""

from .request_body import HTTPError, parse_json, read_body, read_json
from .service import ASGIService, HTTPLimits, check_port, error_handlers
from .thread_signal import thread_signal

__all__ = ["ASGIService", "HTTPError", "HTTPLimits", "check_port", "error_handlers", "parse_json", "read_body", "read_json", "thread_signal"]
