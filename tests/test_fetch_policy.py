"""Agent-driven fetches: deny non-public addresses on every hop (DNS rebinding included), total deadline,
retriever timeouts as env kwargs, and failed searches counted as tool errors."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mem1_gym.qa_env import MultiObjectiveQAEnv
from mem1_gym.web import fetch
from mem1_gym.web.fetch import WebError, fetch_page, http_get
from mem1_gym.web.search import SearchResult
from mem1_gym.websearch_env import WebSearchQAEnv

SMALL = {"dataset_size": 300}


class _Pages(BaseHTTPRequestHandler):
    """Loopback pages: plain, redirecting to loopback, dripping its body or its headers."""

    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up at its deadline, as it should

    def _answer(self):
        port = self.server.server_address[1]
        if self.path in ("/redirect-to-loopback", "/redirect-to-localhost"):
            self.send_response(302)
            host = "127.0.0.1" if self.path.endswith("loopback") else "localhost"
            self.send_header("Location", f"http://{host}:{port}/secret")
            self.end_headers()
            return
        if self.path == "/drip-body":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for i in range(40):  # one line every 0.1 s: each read is quick, the whole takes 4 s
                self.wfile.write(f"<p>line {i}</p>\n".encode())
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path == "/drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(40):
                self.wfile.write(f"X-Drip-{i}: x\r\n".encode())
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"Content-Type: text/html\r\n\r\n<p>late</p>")
            return
        body = b"<html><title>T</title><body><p>the secret page</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(host: str):
    handler = type("Handler", (_Pages,), {"requests": []})
    httpd = ThreadingHTTPServer((host, 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, handler.requests


@pytest.fixture()
def pages():
    httpd, requests = _serve("127.0.0.1")
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "address, kind",
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
     ("192.168.0.1", "private"), ("fd00::1", "private"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
     ("240.0.0.1", "reserved"), ("::ffff:127.0.0.1", "loopback"), ("100.64.0.1", "non-global"), ("1.1.1.1", None),
     ("2606:4700:4700::1111", None)],
)
def test_address_kinds(address, kind):
    assert fetch.address_kind(address) == kind


def test_loopback_private_and_userinfo_urls_are_denied_by_default(pages):
    base, requests = pages
    port = base.rsplit(":", 1)[1]
    for url in (base + "/", f"http://localhost:{port}/", f"http://2130706433:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"):
        with pytest.raises(WebError, match="loopback address"):
            fetch_page(url, timeout=2)
    with pytest.raises(WebError, match="link-local address"):
        fetch_page("http://169.254.169.254/latest/meta-data/", timeout=2)
    with pytest.raises(WebError, match="user name or password"):
        fetch_page(f"http://user:pw@1.1.1.1:{port}/", timeout=2)
    assert requests == []  # nothing reached the server
    # Explicit opt-ins: the flag, or the address named in the allow-list.
    assert "the secret page" in fetch_page(base + "/", timeout=2, allow_private=True).text
    assert "the secret page" in fetch_page(base + "/", timeout=2, allowed_hosts={f"127.0.0.1:{port}"}).text


def test_redirects_are_checked_on_every_hop(pages, monkeypatch):
    base, requests = pages
    port = int(base.rsplit(":", 1)[1])
    # Redirect to a host outside the allow-list: refused before it is fetched.
    with pytest.raises(WebError, match=r"redirects to http://localhost:\d+/secret, which is not an allowed address"):
        fetch_page(base + "/redirect-to-localhost", timeout=2, allowed_hosts={f"127.0.0.1:{port}"})
    assert requests == ["/redirect-to-localhost"]
    # A public page redirecting to loopback. The "public" server is a loopback one at 127.0.0.2 that this
    # test declares public (there is no internet here); every other address keeps its real kind.
    httpd, public_requests = _serve("127.0.0.2")
    real_kind = fetch.address_kind
    monkeypatch.setattr(fetch, "address_kind", lambda a: None if a == "127.0.0.2" else real_kind(a))
    try:
        url = f"http://127.0.0.2:{httpd.server_address[1]}"
        assert "the secret page" in fetch_page(url + "/", timeout=2).text  # the public page itself opens
        with pytest.raises(WebError, match=r"redirects to http://127.0.0.1:\d+/secret.*loopback address"):
            fetch_page(url + "/redirect-to-loopback", timeout=2)
        assert public_requests == ["/", "/redirect-to-loopback"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_dns_rebinding_cannot_swap_in_a_private_address(pages, monkeypatch):
    base, requests = pages
    port = int(base.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, *args, **kwargs):  # public on the first lookup, loopback afterwards
        if host == "rebind.test":
            lookups.append(host)
            return real("1.1.1.1" if len(lookups) == 1 else "127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", rebinding)
    with pytest.raises(WebError):  # 1.1.1.1 is unreachable here (or not serving this port)
        fetch_page(f"http://rebind.test:{port}/", timeout=1)
    assert lookups == ["rebind.test"] and requests == []  # resolved once; the loopback server saw nothing


def test_fetch_timeout_is_a_total_deadline(pages):
    base, requests = pages
    allowed = {base.split("//")[1]}
    with pytest.raises(WebError, match="did not send its page within 1.0 s"):
        http_get(base + "/drip-body", timeout=1.0, allowed_hosts=allowed)
    with pytest.raises(WebError, match="did not answer within 1.0 s"):
        http_get(base + "/drip-headers", timeout=1.0, allowed_hosts=allowed)
    assert requests == ["/drip-body", "/drip-headers"]


class _Results:
    """A search backend whose results point at the given URLs (as an online search engine's could)."""

    def __init__(self, urls):
        self.urls = urls

    def search(self, query, k):
        return [SearchResult(f"result {i}", url, "snippet") for i, url in enumerate(self.urls[:k])]


def test_websearch_env_with_an_online_backend_denies_private_pages_unless_opted_in(pages):
    base, requests = pages
    search = _Results([base + "/", base + "/redirect-to-loopback"])
    env = WebSearchQAEnv(search=search, **SMALL)
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step(f"<IS> x </IS><open> {base}/ </open>")
        assert "Could not open the page" in info["tool_result"]["result"] and "loopback address" in info["tool_result"]["result"]
        assert requests == [] and info["metrics"]["tool_errors"] == 0  # the agent's URL, not a tool failure
    finally:
        env.close()
    env = WebSearchQAEnv(search=search, allow_private_hosts=True, **SMALL)
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step(f"<IS> x </IS><open> {base}/ </open>")
        assert "the secret page" in info["tool_result"]["result"]
    finally:
        env.close()


def test_retriever_timeout_and_retries_are_env_kwargs_and_failures_count_as_tool_errors():
    # A retrieval server that accepts connections and never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        env = MultiObjectiveQAEnv(retriever=url, retriever_timeout=0.2, retriever_retries=1, **SMALL)
        assert env.retriever.timeout == 0.2 and env.retriever.retries == 1
        env.reset(seed=0)
        for i in (1, 2):
            _, reward, term, _, info = env.step("<IS> x </IS><query> born city </query>")
            assert "Search failed" in info["tool_result"]["result"] and "after 2 attempts" in info["tool_result"]["result"]
            assert info["metrics"]["tool_errors"] == i and info["valid"] and not term
        env.reset(seed=1)
        _, _, _, _, info = env.step("no tags")
        assert info["metrics"]["tool_errors"] == 0
    finally:
        listener.close()
    with pytest.raises(ValueError, match="takes no options"):
        MultiObjectiveQAEnv(retriever="rank_bm25", retriever_timeout=1.0, **SMALL)


def test_https_connects_to_the_checked_address_with_the_name_in_sni_and_host(tmp_path, monkeypatch):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=public.test",
         "-addext", "subjectAltName=DNS:public.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    httpd, requests = _serve("127.0.0.1")
    seen: dict[str, str] = {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def record_sni(sock, name, ctx):
        seen["sni"] = name  # returning None lets the handshake go on

    context.sni_callback = record_sni
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    handler = httpd.RequestHandlerClass
    original = handler.do_GET

    def do_get(self):
        seen["host"] = self.headers["Host"]
        original(self)

    handler.do_GET = do_get
    real = socket.getaddrinfo
    monkeypatch.setattr(
        fetch.socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1" if host == "public.test" else host, *a, **k)
    )
    url = f"https://public.test:{httpd.server_address[1]}/"
    try:
        with pytest.raises(WebError, match="CERTIFICATE_VERIFY_FAILED"):  # self-signed: not trusted by default
            fetch_page(url, timeout=3, allow_private=True)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted: the handshake checks the name
        assert "the secret page" in fetch_page(url, timeout=3, allow_private=True).text
        assert seen == {"sni": "public.test", "host": f"public.test:{httpd.server_address[1]}"}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_every_resolved_address_is_tried_in_order(pages, monkeypatch):
    # A name may resolve first to an address where nothing listens (``localhost`` -> ::1 while the server is
    # on 127.0.0.1 only); the fetch must go on to the next checked address, as urllib does.
    base, requests = pages
    port = int(base.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def two_addresses(host, *args, **kwargs):
        if host == "multi.test":
            return real("127.0.0.3", *args, **kwargs) + real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", two_addresses)
    resp = fetch.http_get(f"http://multi.test:{port}/", timeout=5, allow_private=True)
    assert b"the secret page" in resp.body and len(requests) == 1
