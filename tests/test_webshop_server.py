"""The WebShop site over HTTP: routes, escaping, 4xx answers, loopback binding, concurrent sessions, load."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from bs4 import BeautifulSoup

from webshop_env.expert import expert_action
from webshop_env.extract import read_page
from webshop_env.routes import Route, parse_path
from webshop_env.server import WebShopServer
from webshop_env.site import SiteConfig, shared_site

N = 100


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener()
_RAW_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(url: str, form: dict[str, str] | None = None, follow: bool = True) -> tuple[int, str, str]:
    """(status, body, final URL) of a GET, or of a POST of ``form``."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with (_OPENER if follow else _RAW_OPENER).open(url, data=data, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8"), resp.url
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8"), url


@pytest.fixture(scope="module")
def server() -> Iterator[WebShopServer]:
    with WebShopServer(shared_site(SiteConfig(num_products=N))) as s:
        yield s


def test_binds_to_loopback_on_a_free_port(server: WebShopServer) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_root_redirects_to_a_fresh_session(server: WebShopServer) -> None:
    status, _, _ = fetch(server.url + "/", follow=False)
    assert status == 302
    status, html, url = fetch(server.url + "/")
    assert status == 200 and parse_path(urllib.parse.urlsplit(url).path).kind == "search"
    assert 'id="search_input"' in html


def test_session_plays_its_goal_and_search_redirects(server: WebShopServer) -> None:
    goal = server.site.goals[3]
    status, html, _ = fetch(server.url_for("fixed_3"))
    assert status == 200 and read_page(html).instruction == goal.instruction_text
    status, html, url = fetch(server.url_for("fixed_3"), form={"search_query": "  USB   Charger "})
    assert status == 200
    assert urllib.parse.urlsplit(url).path == Route.search("fixed_3").results("usb charger", 1).path()
    assert "Page 1 (Total results:" in read_page(html).text


def test_pages_escape_markup(server: WebShopServer) -> None:
    status, html, url = fetch(server.url_for("esc_1"), form={"search_query": "<script>alert(1)</script>"})
    assert status == 200 and BeautifulSoup(html, "html.parser").find("script") is None
    status, html, _ = fetch(server.url + "/item_page/esc_1/%3Cscript%3Ealert(1)%3C%2Fscript%3E/q/1/%7B%7D")
    assert status == 404 and "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/page", 404),
        ("GET", "/search_results/s_1/charger", 404),
        ("GET", "/search_results/s_1/charger/0", 400),
        ("GET", "/search_results/s_1/charger/two", 400),
        ("GET", "/search_results/s_1/charger/99", 400),
        ("GET", "/search_results/bad%20session/charger/1", 400),
        ("GET", "/search_results/s_1/%FF%FE/1", 400),
        ("GET", "/item_page/s_1/NOSUCHASIN/q/1/%7B%7D", 404),
        ("GET", "/item_page/s_1/{asin}/q/1/not-json", 400),
        ("GET", "/item_page/s_1/{asin}/q/1/%5B1%2C2%5D", 400),
        ("GET", "/item_page/s_1/{asin}/q/1/%7B%22size%22%3A%22galactic%22%7D", 400),
        ("GET", "/item_sub_page/s_1/{asin}/q/1/Secrets/%7B%7D", 404),
        ("GET", "/done/s_1/{asin}", 404),
        ("GET", "/" + "x" * 9000, 414),
        ("POST", "/s_1", 400),
        ("POST", "/item_page/s_1/{asin}/q/1/%7B%7D", 405),
        ("PUT", "/s_1", 405),
        ("DELETE", "/s_1", 405),
    ],
)
def test_unknown_routes_and_bad_parameters_are_4xx(server: WebShopServer, method: str, path: str, status: int) -> None:
    asin = server.site.catalog.at(0).asin
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        body = "search_query=" if method == "POST" else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        conn.request(method, path.replace("{asin}", asin), body=body, headers=headers)
        resp = conn.getresponse()
        assert resp.status == status
        resp.read()
    finally:
        conn.close()


def _shop(server: WebShopServer, session: str, index: int) -> float:
    """Play goal ``index`` over HTTP with the expert; returns the reward on the done page."""
    goal = server.site.goals[index]
    status, html, url = fetch(server.url_for(session))
    for _ in range(30):
        assert status == 200
        view = read_page(html)
        assert view.instruction == goal.instruction_text
        route = parse_path(urllib.parse.urlsplit(url).path)
        if route.kind == "done":
            return float(BeautifulSoup(html, "html.parser").find(id="reward")["data-reward"])
        action = expert_action(server.site, goal, route, view)
        if action.startswith("search["):
            status, html, url = fetch(server.url_for(session), form={"search_query": action[7:-1]})
        else:
            status, html, url = fetch(server.url + view.links[action[6:-1]])
    raise AssertionError("did not reach the done page")


def test_concurrent_sessions_are_kept_apart(server: WebShopServer) -> None:
    rewards: dict[int, float] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            rewards[i] = _shop(server, f"apart{i}_{i}", i)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert rewards == {i: 1.0 for i in range(6)}
    for i in range(6):
        purchases = server.session(f"apart{i}_{i}").purchases
        assert [p[0] for p in purchases] == [server.site.goals[i].asin]


def test_bounded_load_has_no_errors(server: WebShopServer) -> None:
    asin = server.site.catalog.at(1).asin
    paths = [
        "/load_{t}",
        "/search_results/load_{t}/charger/1",
        f"/item_page/load_{{t}}/{asin}/charger/1/%7B%7D",
        f"/item_sub_page/load_{{t}}/{asin}/charger/1/Reviews/%7B%7D",
        "/no/such/page",
    ]
    failures: list[str] = []
    counts = [0] * 8

    def worker(t: int) -> None:
        for i in range(50):
            path = paths[i % len(paths)].format(t=t)
            status, _, _ = fetch(server.url + path)
            if status != (404 if path.startswith("/no/") else 200):
                failures.append(f"{path}: {status}")
            counts[t] += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "the load test did not finish"
    assert failures == [] and counts == [50] * 8


def test_close_releases_the_port() -> None:
    s = WebShopServer(shared_site(SiteConfig(num_products=N))).start()
    port = s.port
    assert fetch(s.url_for("x_0"))[0] == 200
    s.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/x_0", timeout=5)


def test_cli_serves_until_stopped() -> None:
    import re
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "mem1_agent.cli", "webshop", "serve", "--port", "0", "--num-products", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=str(Path(__file__).resolve().parents[1]),  # "-m" finds the packages here
    )
    try:
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "the server did not report its address"
        assert fetch(url + "/fixed_0")[0] == 200 and fetch(url + "/nope/x")[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from mem1_agent.cli import COMMANDS
    from webshop_env.cli import cli

    assert COMMANDS["webshop"][0] == "webshop_env.cli"
    with pytest.raises(SystemExit) as err:
        cli(["serve", "--split", "holdout"])
    assert err.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert cli(["serve", "--port", "0", "--num-products", "50", "--catalog", "/no/such/items.json"]) == 1
    assert "/no/such/items.json" in capsys.readouterr().err


def test_purchase_history_per_session_is_bounded(server: WebShopServer) -> None:
    from webshop_env.server import MAX_PURCHASES

    asin = server.site.catalog.at(2).asin
    for i in range(MAX_PURCHASES + 50):
        server.record_purchase("hoarder_1", asin, {}, i / 1000)
    purchases = server.session("hoarder_1").purchases
    assert len(purchases) == MAX_PURCHASES
    assert [p[2] for p in purchases][:2] == [0.05, 0.051]  # the oldest were forgotten first
    # A done page visited over HTTP is recorded as the newest.
    assert fetch(server.url + f"/done/hoarder_1/{asin}/%7B%7D")[0] == 200
    assert len(purchases) == MAX_PURCHASES and purchases[-1][0] == asin and purchases[0][2] == 0.051


def test_sessions_are_bounded_least_recently_used_first() -> None:
    with WebShopServer(shared_site(SiteConfig(num_products=N)), max_sessions=3, max_purchases=2) as s:
        for name in ("a_1", "b_2", "c_3"):
            assert fetch(s.url_for(name))[0] == 200
        assert fetch(s.url_for("a_1"))[0] == 200  # a_1 is now the most recently used
        assert fetch(s.url_for("d_4"))[0] == 200
        assert s.sessions() == 3 and set(s._sessions) == {"c_3", "a_1", "d_4"}
        asin = s.site.catalog.at(0).asin
        for _ in range(3):
            assert fetch(s.url + f"/done/a_1/{asin}/%7B%7D")[0] == 200
        assert len(s.session("a_1").purchases) == 2
    with pytest.raises(ValueError, match="at least 1"):
        WebShopServer(shared_site(SiteConfig(num_products=N)), max_sessions=0)
