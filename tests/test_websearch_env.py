"""``mem1_gym/WebSearchQA-v0``: the local web, search backends, page fetching, the env and its oracle."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mem1_gym  # noqa: F401  (registers the environments)
from mem1_gym.data.schema import Passage
from mem1_gym.retrieval import make_retriever
from mem1_gym.web.fetch import WebError, fetch_page, html_to_text, http_get, http_json, truncate_text
from mem1_gym.web.search import LocalWebSearch, SearxNGSearch, SerperSearch, make_web_search
from mem1_gym.web.site import LocalWebServer, shared_local_webs
from mem1_gym.websearch_env import WebSearchQAEnv

ENV_ID = "mem1_gym/WebSearchQA-v0"
SMALL = {"dataset_size": 300}


def run_oracle(env: gym.Env, seed: int) -> tuple[float, dict]:
    env.reset(seed=seed)
    total, done, info = 0.0, False, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
        total += reward
        done = terminated or truncated
    return total, info


# -- the local web ----------------------------------------------------------------

CORPUS = [
    Passage("p0", "Zorakex", "Zorakex is a city in the province of Valmir.\nIt was settled in 1412."),
    Passage("p/1 ü", "Brilotath & Sons", "Brilotath <b>was</b> born in Zorakex in 1801."),
    Passage("p2", "Halmirk", "Halmirk is a city in the province of Ostrava."),
    Passage("p3", "Kepunorn Guild", "The Kepunorn Guild was founded in 1830."),
    Passage("p4", "Fenlisk Codex", "The Fenlisk Codex is an epic poem."),
]


@pytest.fixture()
def site():
    server = LocalWebServer(CORPUS, make_retriever("rank_bm25", CORPUS))
    yield server
    server.close()


def test_local_web_serves_pages_and_search(site):
    page = fetch_page(site.url_of("p0"), allowed_hosts={site.netloc})
    assert page.title == "Zorakex"
    assert "settled in 1412" in page.text and "Served by" not in page.text and "localWiki" not in page.text
    odd = fetch_page(site.url_of("p/1 ü"), allowed_hosts={site.netloc})
    assert odd.title == "Brilotath & Sons" and "<b>was</b> born" in odd.text  # escaped, not markup
    results = LocalWebSearch(site.url).search("Brilotath born", 2)
    assert results[0].title == "Brilotath & Sons" and results[0].url == site.url_of("p/1 ü")
    assert "born in Zorakex" in results[0].snippet
    assert LocalWebSearch(site.url).search("   ", 2) == []
    with pytest.raises(WebError, match="HTTP 404"):
        fetch_page(site.url + "/wiki/nope", allowed_hosts={site.netloc})
    with pytest.raises(WebError, match="HTTP 400"):
        LocalWebSearch(site.url).search("x", 10_000)
    with socket.create_connection(("127.0.0.1", int(site.netloc.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 4")  # a clean 4xx, not a dropped connection


def test_fetch_refuses_disallowed_addresses_without_contacting_them(site, refused_port):
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "javascript:alert(1)", "not a url"):
        with pytest.raises(WebError, match="only http"):
            fetch_page(url, allowed_hosts={site.netloc})
    for url in ("http://example.com/", f"http://127.0.0.1:{refused_port}/wiki/p0", "http://127.0.0.1:notaport/"):
        with pytest.raises(WebError, match="not reachable"):
            fetch_page(url, allowed_hosts={site.netloc})


def test_html_to_text_and_truncation():
    page = html_to_text(
        "<html><head><title> T </title><style>p{}</style></head><body><nav>menu</nav>"
        "<p>one   two</p><script>var x</script><p>three</p></body></html>"
    )
    assert page.title == "T" and page.text == "one two\nthree"
    assert truncate_text("a b c", 10) == "a b c"
    cut = truncate_text("word " * 100, 42)
    assert cut.startswith("word word") and "[page cut to" in cut and "of 500 characters]" in cut


class _Fakes(BaseHTTPRequestHandler):
    """Loopback stand-ins for online APIs and hostile pages (same JSON shapes as SearxNG and Serper)."""

    site: LocalWebServer
    api_key = "test-key"

    def log_message(self, *args):
        pass

    def _reply(self, status, body: bytes, content_type: str, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        if parts.path == "/search" and params.get("format") == ["json"]:
            hits = self.site.search(params["q"][0], 10)
            payload = {"query": params["q"][0], "results": [{"title": h["title"], "url": h["url"], "content": h["snippet"], "engine": "fake"} for h in hits]}
            self._reply(200, json.dumps(payload).encode(), "application/json")
        elif parts.path == "/binary":
            self._reply(200, b"%PDF-1.4 binary", "application/pdf")
        elif parts.path == "/big":
            self._reply(200, b"<html><body><p>" + b"big " * 300_000 + b"</p></body></html>", "text/html")
        elif parts.path == "/slow":
            time.sleep(1.5)
            self._reply(200, b"<p>late</p>", "text/html")
        elif parts.path == "/redirect-out":
            self._reply(302, b"", "text/html", {"Location": "http://203.0.113.7/elsewhere"})
        elif parts.path == "/garbage-json":
            self._reply(200, b"{oops", "application/json")
        else:
            self._reply(404, b"no", "text/plain")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("X-API-KEY") != self.api_key:
            self._reply(403, b'{"message": "bad key"}', "application/json")
            return
        hits = self.site.search(body["q"], body["num"])
        payload = {"organic": [{"title": h["title"], "link": h["url"], "snippet": h["snippet"], "position": i} for i, h in enumerate(hits, 1)]}
        self._reply(200, json.dumps(payload).encode(), "application/json")


@pytest.fixture()
def fakes():
    """A loopback server with SearxNG/Serper-shaped APIs backed by a local web of the fictional world."""
    env = WebSearchQAEnv(**SMALL)  # owns the local web the fake APIs point at
    handler = type("Handler", (_Fakes,), {"site": env.site})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    env.close()


def test_fetch_limits_content_types_timeouts_and_redirects(fakes):
    netloc = urlsplit(fakes).netloc
    with pytest.raises(WebError, match="application/pdf, not a text page"):
        fetch_page(fakes + "/binary", allowed_hosts={netloc})
    big = http_get(fakes + "/big", max_bytes=10_000, allowed_hosts={netloc})
    assert big.truncated and len(big.body) == 10_000
    assert fetch_page(fakes + "/big", max_bytes=10_000, allowed_hosts={netloc}).text.startswith("big big")
    with pytest.raises(WebError, match="did not answer within 0.3 s"):
        fetch_page(fakes + "/slow", timeout=0.3, allowed_hosts={netloc})
    with pytest.raises(WebError, match="redirects to http://203.0.113.7/elsewhere"):
        fetch_page(fakes + "/redirect-out", allowed_hosts={netloc})
    with pytest.raises(WebError, match="did not answer JSON"):
        http_json(fakes + "/garbage-json", allowed_hosts={netloc})
    with pytest.raises(WebError, match="HTTP 404"):
        SearxNGSearch(fakes + "/no-searxng-here").search("x", 3)


@pytest.mark.parametrize("backend", ["searxng", "serper"])
def test_online_adapters_against_loopback_fakes_solve_the_task(fakes, backend, monkeypatch):
    if backend == "serper":
        monkeypatch.setenv("MEM1_TEST_SERPER_KEY", "test-key")
        search = SerperSearch(api_key_env="MEM1_TEST_SERPER_KEY", endpoint=fakes + "/search")
    else:
        search = make_web_search(f"searxng:{fakes}")
    results = search.search("born", 3)
    assert len(results) == 3 and all(r.url.startswith("http://127.0.0.1:") and r.title for r in results)
    # The fakes' results point at the loopback local web: opening them needs the explicit opt-in.
    env = WebSearchQAEnv(n_objectives=2, search=search, allow_private_hosts=True, **SMALL)
    try:
        total, info = run_oracle(env, seed=5)
        assert info["metrics"]["f1"] == pytest.approx(2.0) and total == pytest.approx(2.0)
    finally:
        env.close()


def test_serper_key_errors(fakes, monkeypatch):
    monkeypatch.delenv("MEM1_TEST_SERPER_KEY", raising=False)
    with pytest.raises(ValueError, match="MEM1_TEST_SERPER_KEY"):
        SerperSearch(api_key_env="MEM1_TEST_SERPER_KEY")
    monkeypatch.setenv("MEM1_TEST_SERPER_KEY", "wrong")
    with pytest.raises(WebError, match="HTTP 403"):
        SerperSearch(api_key_env="MEM1_TEST_SERPER_KEY", endpoint=fakes + "/search").search("x", 2)
    with pytest.raises(ValueError, match="unknown web search backend"):
        make_web_search("bing")


# -- the environment ----------------------------------------------------------------


@pytest.fixture()
def env():
    e = gym.make(ENV_ID, n_objectives=2, **SMALL)
    yield e
    e.close()


def test_registered_and_passes_check_env(env):
    assert ENV_ID in gym.registry
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("n, memory", [(1, "mem1"), (3, "mem1"), (2, "full"), (2, "window:1"), (2, "truncate:150")])
def test_oracle_gets_full_f1(n, memory):
    env = gym.make(ENV_ID, n_objectives=n, memory=memory, **SMALL)
    try:
        for seed in (0, 1):
            total, info = run_oracle(env, seed)
            m = info["metrics"]
            assert m["f1"] == pytest.approx(n) and m["em"] == pytest.approx(n) and total == pytest.approx(n)
            assert m["answered"] == 1.0 and m["pages_opened"] >= n
            assert {"turns", "peak_tokens", "dependency", "em", "f1"} <= set(m)
    finally:
        env.close()


def test_tools_show_results_pages_and_failures(env):
    obs, _ = env.reset(seed=3)
    assert "<open> URL </open> opens a page" in obs and "searches the web; each result" in obs and "Questions:" in obs
    assert "knowledge base" not in obs  # the QA prompt's search line was replaced
    _, _, _, _, info = env.step("<IS> start </IS><query> born </query>")
    result = info["tool_result"]["result"]
    assert result.startswith("1. ") and "URL: http://127.0.0.1:" in result
    url = info["tool_result"]["urls"][0]
    obs, _, _, _, info = env.step(f"<IS> read it </IS><open> {url} </open>")
    assert info["valid"] and "Page: " in info["tool_result"]["result"] and "born" in info["tool_result"]["result"]
    path = urlsplit(url).path
    _, _, _, _, info = env.step(f"<IS> relative </IS><open> {path} </open>")
    assert info["tool_result"]["url"] == url
    for target, message in [
        ("http://example.com/", "not reachable"),
        ("file:///etc/passwd", "only http"),
        (url.rsplit("/", 1)[0] + "/missing-page", "HTTP 404"),
        ("", "the URL is empty"),
    ]:
        obs, reward, terminated, truncated, info = env.step(f"<IS> x </IS><open> {target} </open>")
        assert message in info["tool_result"]["result"], info["tool_result"]
        if terminated or truncated:
            break


def test_page_budget_cuts_long_pages():
    env = gym.make(ENV_ID, page_chars=40, **SMALL)
    try:
        env.reset(seed=0)
        env.step(env.unwrapped.oracle_action())
        _, _, _, _, info = env.step(env.unwrapped.oracle_action())
        assert "[page cut to" in info["tool_result"]["result"]
    finally:
        env.close()


def test_search_backend_down_is_an_info_message(refused_port):
    env = gym.make(ENV_ID, search=f"searxng:http://127.0.0.1:{refused_port}", fetch_timeout=2, **SMALL)
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step("<IS> x </IS><query> anything </query>")
        assert "Search failed: cannot reach http://127.0.0.1:" in info["tool_result"]["result"]
        assert not terminated and reward == 0.0
    finally:
        env.close()


def test_reward_is_f1_and_em_is_reported(env):
    env.reset(seed=2)
    task = env.unwrapped.task
    first = task.items[0].answers[0]
    _, reward, terminated, _, info = env.step(f"<IS> guess </IS><answer> {first} extra; wrong </answer>")
    assert terminated
    assert info["metrics"]["em"] == 0.0
    assert reward == pytest.approx(info["metrics"]["f1"]) and 0 < reward < 1


def test_deterministic_under_reset_seed():
    def rollout(env):
        obs, _ = env.reset(seed=11)
        trace = [obs]
        for _ in range(4):
            obs, reward, *_ = env.step(env.unwrapped.oracle_action())
            trace.append((obs, reward))
        return trace

    a = gym.make(ENV_ID, n_objectives=2, **SMALL)
    b = gym.make(ENV_ID, n_objectives=2, **SMALL)
    try:
        assert rollout(a) == rollout(b)
        assert a.reset(seed=1)[0] != a.reset(seed=2)[0]
    finally:
        a.close()
        b.close()


def test_envs_share_one_local_web_per_process_and_close_stops_it():
    before = shared_local_webs()
    a = WebSearchQAEnv(**SMALL)
    b = WebSearchQAEnv(**SMALL)
    assert a.site is b.site and shared_local_webs() == before + 1
    url = a.site.url
    a.close()
    assert shared_local_webs() == before + 1 and b.site is not None
    b.close()
    assert shared_local_webs() == before
    with pytest.raises(WebError, match="cannot reach"):
        fetch_page(url + "/", allowed_hosts={urlsplit(url).netloc}, timeout=2)


def _oracle_episode_vector(vec, n_envs):
    """Each env's return over its first episode (later steps autoreset and are not counted)."""
    vec.reset(seed=list(range(n_envs)))
    totals = [0.0] * n_envs
    finished = [False] * n_envs
    for _ in range(12):
        actions = vec.call("oracle_action")
        _, rewards, terminated, truncated, _ = vec.step(tuple(actions))
        for i in range(n_envs):
            if not finished[i]:
                totals[i] += float(rewards[i])
                finished[i] = bool(terminated[i] or truncated[i])
        if all(finished):
            break
    return totals


def test_sync_and_async_vector_envs():
    fns = [lambda: gym.make(ENV_ID, n_objectives=1, **SMALL) for _ in range(2)]
    sync = gym.vector.SyncVectorEnv(fns)
    try:
        assert _oracle_episode_vector(sync, 2) == [1.0, 1.0]
    finally:
        sync.close()
    asyn = gym.vector.AsyncVectorEnv(fns)
    try:
        assert _oracle_episode_vector(asyn, 2) == [1.0, 1.0]
    finally:
        asyn.close()


# -- fuzz: nothing escapes step() -----------------------------------------------------

_FUZZ_ENV: dict[str, gym.Env] = {}


def _fuzz_env() -> gym.Env:
    if "env" not in _FUZZ_ENV:
        _FUZZ_ENV["env"] = gym.make(ENV_ID, n_objectives=2, max_turns=1000, **SMALL)
        _FUZZ_ENV["env"].reset(seed=0)
    return _FUZZ_ENV["env"]


@pytest.fixture(scope="module", autouse=True)
def _close_fuzz_env():
    yield
    if "env" in _FUZZ_ENV:
        _FUZZ_ENV.pop("env").close()


_urls = st.one_of(
    st.sampled_from(["/wiki/", "/search?q=x", "/", "/health", "http://example.com/", "file:///etc/passwd", "http://[::1", "http://127.0.0.1:0/"]),
    st.text(max_size=40),
    st.builds(lambda s: "/wiki/" + s, st.text(max_size=20)),
)
_actions = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s, u: f"<IS>{s}</IS><open>{u}</open>", st.text(max_size=30), _urls),
    st.builds(lambda s, q: f"<IS>{s}</IS><query>{q}</query>", st.text(max_size=30), st.text(max_size=60)),
    st.builds(lambda s, a: f"<IS>{s}</IS><answer>{a}</answer>", st.text(max_size=30), st.text(max_size=60)),
    st.builds(lambda a, b: f"<IS>{a}<open>{b}</IS></open><query>", st.text(max_size=20), st.text(max_size=20)),
    st.integers(),
    st.none(),
    st.binary(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_actions)
def test_fuzz_random_actions_never_raise(action):
    env = _fuzz_env()
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, str) and isinstance(reward, float)
    assert {"turn", "valid", "error", "visible_ids", "context_tokens"} <= set(info)
    if terminated or truncated:
        env.reset()
