"""The four servers under hostile clients (loopback): slow headers and bodies, garbage, odd methods,
deep JSON, connection caps, shutdown. They share mem1_http's uvicorn service, so each case runs
against every server that the case applies to."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from typing import Iterator

import pytest

from mem1_gym.data.schema import Passage
from mem1_gym.retrieval import make_retriever
from mem1_gym.retrieval_server import RetrievalServer
from mem1_gym.web.site import LocalWebServer
from mem1_http import ASGIService, HTTPLimits
from webshop_env.server import WebShopServer
from webshop_env.site import SiteConfig, shared_site

CORPUS = [Passage(f"p{i}", f"Title {i}", f"Passage {i} about city {i % 3} and river {i % 5}.") for i in range(20)]
KINDS = ["webshop", "retrieval", "local-web", "policy"]
#: A well-formed POST for the servers that take a body.
POSTS = {
    "webshop": ("/s_1", "application/x-www-form-urlencoded", b"search_query=river"),
    "retrieval": ("/retrieve", "application/json", b'{"queries": ["city"], "topk": 2}'),
    "policy": ("/v1/completions", "application/json", b'{"prompt": "hello", "max_tokens": 1}'),
}
_POLICY: dict[str, object] = {}


def make_server(kind: str, limits: HTTPLimits) -> ASGIService:
    """A started server of ``kind`` with ``limits``."""
    if kind == "webshop":
        return WebShopServer(shared_site(SiteConfig(num_products=50)), limits=limits).start()
    retriever = make_retriever("bm25s", CORPUS, "server-hardening")
    if kind == "retrieval":
        return RetrievalServer(retriever, http_limits=limits).start()
    if kind == "local-web":
        return LocalWebServer(CORPUS, retriever, limits=limits)
    from mem1_agent.models import load_policy
    from mem1_agent.serve_policy import PolicyServer

    if "model" not in _POLICY:
        _POLICY["model"], _POLICY["tokenizer"] = load_policy("tiny", value_head=False)
    return PolicyServer(("127.0.0.1", 0), _POLICY["model"].eval(), _POLICY["tokenizer"], "tiny", http_limits=limits).start()


FAST = HTTPLimits(header_timeout=1.0, body_timeout=1.0, keep_alive_timeout=5.0)


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, ASGIService]]:
    srv = make_server(request.param, FAST)
    try:
        yield request.param, srv
    finally:
        srv.close()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def raw_exchange(srv: ASGIService, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def is_json_error(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("content-type", "").startswith("application/json") and "error" in json.loads(body)


def test_port_zero_binds_a_real_port_on_loopback(server):
    _, srv = server
    assert srv.host == "127.0.0.1" and srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}"


def test_trickled_headers_do_not_hold_a_connection(server):
    # A slow-loris client: one header line every 0.2 s, never the blank line that ends them.
    _, srv = server
    start = time.monotonic()
    received = b""
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for i in range(60):  # 12 s at most
            try:
                sock.sendall(b"X-Drip-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            if select.select([sock], [], [], 0.2)[0]:
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                received += chunk
                if not chunk:
                    closed = True
                    break
    elapsed = time.monotonic() - start
    assert closed or received, "the server kept reading trickled headers for 12 s"
    assert elapsed < 1.0 + 3.0  # the header deadline (1 s) plus slack for a loaded machine
    if received:
        status, headers, body = split_response(received)
        assert status == 408 and is_json_error(headers, body)


def test_incomplete_bodies_time_out_and_hold_no_thread_each(server):
    kind, srv = server
    if kind not in POSTS:
        pytest.skip("serves no request bodies")
    path, content_type, _ = POSTS[kind]
    threads_before = threading.active_count()
    socks = []
    try:
        for _ in range(40):
            sock = socket.create_connection((srv.host, srv.port), timeout=10)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n".encode() + b"{" * 10)
            socks.append(sock)
        time.sleep(0.3)
        # The stdlib server spent a thread per connection; uvicorn serves them all from its event loop.
        assert threading.active_count() - threads_before <= 2
        path, content_type, body = POSTS[kind]
        status, _, _ = split_response(raw_exchange(srv, (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body))
        assert status in (200, 303)  # other clients are served meanwhile
        for sock in socks:  # each stalled body is answered 408 once the body deadline (1 s) passes
            status, headers, reply = split_response(read_until_closed(sock, 5))
            assert status == 408
            assert kind == "webshop" or is_json_error(headers, reply)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\n\r\n"])
def test_unparseable_requests_get_a_json_400(server, garbage):
    _, srv = server
    status, headers, body = split_response(raw_exchange(srv, garbage))
    assert status == 400 and is_json_error(headers, body)


def test_unknown_methods_are_405_not_501(server):
    kind, srv = server
    status, headers, body = split_response(raw_exchange(srv, b"BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 405
    if kind == "webshop":  # the site answers its browsers with its own HTML error page
        assert headers["content-type"].startswith("text/html") and b"405" in body
    else:
        assert is_json_error(headers, body)


def test_unknown_paths_are_404_with_the_servers_error_format(server):
    kind, srv = server
    status, headers, body = split_response(raw_exchange(srv, b"GET /no/such/thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 404
    assert headers["content-type"].startswith("text/html") if kind == "webshop" else is_json_error(headers, body)


@pytest.mark.parametrize("kind", ["retrieval", "policy"])
def test_deeply_nested_json_is_a_400_not_a_dropped_connection(kind):
    srv = make_server(kind, HTTPLimits())
    try:
        path = POSTS[kind][0]
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 50 + b"1" + b"}" * 50):
            status, headers, reply = split_response(raw_exchange(srv, (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode() + body))
            assert status == 400 and is_json_error(headers, reply)
            assert "nests deeper than 32 levels" in reply.decode()
    finally:
        srv.close()


def test_connections_over_the_cap_are_refused_and_then_served_again():
    srv = make_server("retrieval", HTTPLimits(max_connections=4))
    request = b'POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{"queries": ["river"]}'
    try:
        idle = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(4)]
        time.sleep(0.2)
        status, _, _ = split_response(raw_exchange(srv, request))
        assert status == 503
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        status, _, body = split_response(raw_exchange(srv, request))
        assert status == 200 and len(json.loads(body)["result"]) == 1
    finally:
        srv.close()


def test_close_stops_promptly_with_a_connection_open_and_releases_the_port():
    srv = make_server("local-web", HTTPLimits())
    keep = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    keep.request("GET", "/health")
    response = keep.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    start = time.monotonic()
    srv.close()
    assert time.monotonic() - start < 5
    assert keep.sock.recv(4096) == b""  # the idle keep-alive connection was closed, not left dangling
    keep.close()
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2).close()


def test_served_connections_have_nagles_algorithm_off(server):
    # Answers go out as two writes (headers, body); with Nagle's algorithm on, every keep-alive
    # answer after the first waited ~40 ms for the client's delayed ACK (p50 50 ms instead of 5 ms).
    _, srv = server
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 ")
        connections = list(srv._server.server_state.connections)  # uvicorn's open connections
        assert connections
        for connection in connections:
            served = connection.transport.get_extra_info("socket")
            assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
