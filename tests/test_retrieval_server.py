"""The retrieval server (Search-R1 API) and the ``http`` retriever backend, on loopback."""

from __future__ import annotations

import http.client
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mem1_gym.data.schema import Passage
from mem1_gym.retrieval import make_retriever
from mem1_gym.retrieval_http import HttpRetriever, RetrievalRequestError, RetrieverUnavailable
from mem1_gym.retrieval_server import RetrievalServer, ServerLimits

ROOT = Path(__file__).resolve().parents[1]

CORPUS = [
    Passage("p0", "Zorakex", "Zorakex is a city in the province of Valmir, settled in 1412."),
    Passage("p1", "Brilotath", "Brilotath was born in Zorakex in 1801 and worked as a cartographer."),
    Passage("p2", "Kepunorn Guild", "The Kepunorn Guild was founded by Brilotath in 1830."),
    Passage("p3", "Fenlisk Codex", "The Fenlisk Codex is an epic poem written by Brilotath."),
    Passage("p4", "Halmirk", "Halmirk is a city in the province of Ostrava, settled in 1550."),
    Passage("p5", "Torvexa", "Torvexa was born in Halmirk and is employed by the Kepunorn Guild."),
]
QUERIES = ["Zorakex settled", "Brilotath born", "Kepunorn Guild founded", "Fenlisk Codex written", "Torvexa employed"]
BROAD = "Zorakex Brilotath Kepunorn Fenlisk Halmirk Torvexa"  # matches every passage


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    return make_retriever("bm25s", CORPUS, "test-retrieval-server")


@pytest.fixture()
def server(retriever):
    with RetrievalServer(retriever, limits=ServerLimits(max_topk=5, max_queries=8, max_body_bytes=4096)) as srv:
        yield srv


def post(server: RetrievalServer, body: bytes, path: str = "/retrieve", headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_http_backend_matches_in_process_retrieval(server, retriever):
    client = make_retriever(server.url, CORPUS, "ignored")
    assert isinstance(client, HttpRetriever)
    remote = client.search(QUERIES, 3)
    local = retriever.search(QUERIES, 3)
    assert [[h.id for h in row] for row in remote] == [[h.id for h in row] for row in local]
    assert [[h.contents for h in row] for row in remote] == [[h.contents for h in row] for row in local]
    for r_row, l_row in zip(remote, local):
        assert [h.score for h in r_row] == pytest.approx([h.score for h in l_row])
    assert remote[1][0].id == "p1"


def test_search_r1_layout_with_and_without_scores(server):
    status, payload = post(server, json.dumps({"queries": ["Zorakex settled"], "topk": 2, "return_scores": True}).encode())
    assert status == 200
    first = payload["result"][0][0]
    assert set(first) == {"document", "score"} and set(first["document"]) == {"id", "contents"}
    assert first["document"]["id"] == "p0" and first["document"]["contents"].startswith('"Zorakex"')
    status, payload = post(server, json.dumps({"queries": ["Zorakex settled", "Halmirk"], "topk": 2}).encode())
    assert status == 200 and len(payload["result"]) == 2
    assert set(payload["result"][0][0]) == {"id", "contents"}


def test_health_endpoint(server):
    health = HttpRetriever(server.url).health()
    assert health["status"] == "ok" and health["max_topk"] == 5


def test_batching_splits_large_query_lists(server, retriever):
    client = HttpRetriever(server.url, batch_size=2)
    queries = QUERIES * 3
    assert [[h.id for h in row] for row in client.search(queries, 2)] == [
        [h.id for h in row] for row in retriever.search(queries, 2)
    ]


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 400, "missing field 'queries'"),
        (b'{"queries": "one string"}', 400, "list of strings"),
        (b'{"queries": [1, 2]}', 400, "list of strings"),
        (b'{"queries": ["a"], "topk": 1000000}', 400, "between 1 and 5"),
        (b'{"queries": ["a"], "topk": -1}', 400, "between 1 and 5"),
        (b'{"queries": ["a"], "topk": false}', 400, "integer"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "limit is 4096"),
        (b'{"queries": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nests deeper than 32"),
        (b'{"q": ' + b"[" * 1500 + b"]" * 1500 + b"}", 400, "nests deeper than 32"),
        (b'{"queries": ["a"], "topk": true}', 400, "integer"),
        (b'{"queries": ["a"], "topk": "3"}', 400, "integer"),
        (b'{"queries": ["a"], "return_scores": "yes"}', 400, "true or false"),
        (json.dumps({"queries": ["a"] * 9}).encode(), 413, "limit is 8"),
        (json.dumps({"queries": ["x" * 5000]}).encode(), 413, "limit is 4096"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(server, body, status, fragment):
    got, payload = post(server, body)
    assert got == status
    assert fragment in payload["error"]
    # The server keeps answering after a bad request.
    assert post(server, b'{"queries": ["Halmirk"]}')[0] == 200


def test_json_nested_past_the_recursion_limit_is_a_400_not_a_dropped_connection(retriever):
    limits = ServerLimits(max_body_bytes=1 << 20)
    with RetrievalServer(retriever, limits=limits) as srv:
        status, payload = post(srv, b"[" * 200_000 + b"]" * 200_000)
        assert status == 400 and "nests deeper than 32 levels" in payload["error"]
        status, payload = post(srv, b'{"queries": ["a"], "x": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}")
        assert status == 400 and "nests deeper" in payload["error"]
        assert post(srv, b'{"queries": ["Halmirk"]}')[0] == 200


def test_topk_null_or_zero_falls_back_to_the_server_default(retriever):
    with RetrievalServer(retriever, default_topk=4) as srv:
        for topk in (None, 0):
            status, payload = post(srv, json.dumps({"queries": [BROAD], "topk": topk}).encode())
            assert status == 200 and len(payload["result"][0]) == 4, topk
        status, payload = post(srv, json.dumps({"queries": [BROAD]}).encode())
        assert status == 200 and len(payload["result"][0]) == 4
    with pytest.raises(ValueError, match="default_topk"):
        RetrievalServer(retriever, default_topk=0)


def test_search_r1_batch_of_2560_queries_in_one_request_by_default(retriever):
    # Search-R1's client (search_r1/llm_agent/generation.py) posts every rollout's query of a
    # turn at once: requests.post(url, json={"queries": [...], "topk": 3, "return_scores": True}).
    queries = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(2560)]
    body = json.dumps({"queries": queries, "topk": 3, "return_scores": True}).encode()
    expected = retriever.search(queries, 3)
    with RetrievalServer(retriever) as srv:
        status, payload = post(srv, body)
        assert status == 200 and len(payload["result"]) == 2560
        assert [[d["document"]["id"] for d in row] for row in payload["result"]] == [[h.id for h in row] for row in expected]
        assert srv.health()["max_queries"] == 4096
        over = json.dumps({"queries": ["a"] * 4097}).encode()
        status, payload = post(srv, over)
        assert status == 413 and "4097 queries in one request; the limit is 4096" in payload["error"]


def test_large_requests_are_answered_in_bounded_chunks_with_the_same_result(retriever):
    queries = [QUERIES[i % len(QUERIES)] for i in range(50)]
    expected = [[h.id for h in row] for row in retriever.search(queries, 2)]
    with RetrievalServer(retriever, limits=ServerLimits(chunk_hits=8)) as srv:
        status, payload = post(srv, json.dumps({"queries": queries, "topk": 2}).encode())
        assert status == 200 and [[d["id"] for d in row] for row in payload["result"]] == expected
        # 8 hits per chunk at topk 2: 4 queries per retriever call, 13 calls for 50 queries.
        assert srv.health()["batches"] == 13
        assert HttpRetriever(srv.url, batch_size=50).search(queries, 2)[7][0].id == expected[7][0]


def test_client_needs_no_health_endpoint():
    # A server with Search-R1's one endpoint only (as theirs): the client retrieves without /health.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mem1_http import ASGIService

    seen: list[dict] = []

    async def retrieve(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        docs = [[{"document": {"id": f"{q}-{i}", "contents": f'"{q}"\ntext {i}'}, "score": 1.0 / (i + 1)} for i in range(body["topk"])]
                for q in body["queries"]]
        return JSONResponse({"result": docs})

    with ASGIService(Starlette(routes=[Route("/retrieve", retrieve, methods=["POST"])])) as srv:
        hits = HttpRetriever(srv.url).search(["alpha", "beta"], 2)
    assert [[h.id for h in row] for row in hits] == [["alpha-0", "alpha-1"], ["beta-0", "beta-1"]]
    assert seen == [{"queries": ["alpha", "beta"], "topk": 2, "return_scores": True}]


def test_wrong_endpoints_and_methods(server):
    assert post(server, b"{}", path="/nope")[0] == 404
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/retrieve")
    resp = conn.getresponse()
    assert resp.status == 405 and "POST" in json.loads(resp.read())["error"]
    conn.close()


def test_missing_content_length_is_refused(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411")


def test_client_reports_refusals_without_retrying(server):
    client = HttpRetriever(server.url, retries=3, backoff=5.0)
    start = time.monotonic()
    with pytest.raises(RetrievalRequestError, match="between 1 and 5"):
        client.search(["Zorakex"], 50)
    assert time.monotonic() - start < 4.0  # no backoff sleep: a 4xx is final


def test_unreachable_server_gives_a_clear_error_naming_the_url(refused_port):
    url = f"http://127.0.0.1:{refused_port}"
    client = HttpRetriever(url, retries=2, backoff=0.01, timeout=2)
    with pytest.raises(RetrieverUnavailable) as err:
        client.search(["anything"], 3)
    message = str(err.value)
    assert f"{url}/retrieve" in message and "3 attempts" in message and "serve-retriever" in message


def test_client_times_out_on_a_silent_server():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (kernel backlog) but never answers
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        client = HttpRetriever(url, retries=1, backoff=0.01, timeout=0.3)
        start = time.monotonic()
        with pytest.raises(RetrieverUnavailable, match="timed out"):
            client.search(["anything"], 3)
        assert time.monotonic() - start < 5


def test_client_retries_until_the_server_comes_up(retriever):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # port 0: the kernel's pick, held (refusing connections) until the server takes it
    port = holder.getsockname()[1]
    started: list[RetrievalServer] = []

    def start_later() -> None:
        time.sleep(0.4)
        holder.close()
        started.append(RetrievalServer(retriever, port=port).start())

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        client = HttpRetriever(f"http://127.0.0.1:{port}", retries=6, backoff=0.1, timeout=5)
        hits = client.search(["Brilotath born"], 1)
        assert hits[0][0].id == "p1"
    finally:
        thread.join()
        for srv in started:
            srv.close()


def test_client_pickles_without_its_connections(server):
    client = HttpRetriever(server.url)
    client.search(["Halmirk"], 1)
    clone = pickle.loads(pickle.dumps(client))
    assert clone.search(["Halmirk"], 1)[0][0].id == client.search(["Halmirk"], 1)[0][0].id


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection(server):
    client = HttpRetriever(server.url)
    parent_conn = (client.search(["Halmirk"], 1), client._local.conn)[1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's socket
        ok = client.search(["Brilotath born"], 1)[0][0].id == "p1" and client._local.conn is not parent_conn
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert client.search(["Halmirk"], 1)[0][0].id == "p4" and client._local.conn is parent_conn


@pytest.mark.parametrize("batch", [1, 512])
def test_bounded_load_from_concurrent_clients_sees_no_error(retriever, batch):
    clients, requests = 6, 150
    expected = {
        (q, k): [h.id for h in row] for k in (2, 3) for q, row in zip(QUERIES, retriever.search(QUERIES, k))
    }
    failures: list[str] = []
    with RetrievalServer(retriever, limits=ServerLimits(max_batch_queries=batch)) as srv:
        client = HttpRetriever(srv.url, retries=0)  # any failure must show, not be retried away

        def worker(c: int) -> None:
            k = 2 + c % 2  # mixed topk: a merged batch must still answer each request with its own k
            for r in range(requests):
                q = QUERIES[(c + r) % len(QUERIES)]
                try:
                    got = [h.id for h in client.search([q], k)[0]]
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if got != expected[q, k]:
                    failures.append(f"{q!r} k={k}: {got} != {expected[q, k]}")

        threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = srv.health()
    assert failures == []
    assert health["queries"] == clients * requests
    if batch == 1:
        assert health["batches"] == clients * requests


def test_serve_retriever_command_serves_until_stopped(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        "serve-retriever", "--dataset", "fictional", "--dataset-size", "300", "--index", str(tmp_path / "idx"), "--port", "0",
        "--topk", "2", "--max-queries", "3",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mem1_agent.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert "serving" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ")[1].strip()
        client = HttpRetriever(url)
        assert client.health()["status"] == "ok"
        hits = client.search(["born", "founded"], 2)
        assert len(hits) == 2 and all(len(row) == 2 for row in hits)
        base = url.rsplit("/retrieve", 1)[0]
        host, port = base.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/retrieve", body=json.dumps({"queries": ["born"], "topk": None}), headers={"Content-Type": "application/json"})
        assert [len(row) for row in json.loads(conn.getresponse().read())["result"]] == [2]  # --topk
        conn.request("POST", "/retrieve", body=json.dumps({"queries": ["a", "b", "c", "d"]}), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 413 and "the limit is 3" in json.loads(response.read())["error"]  # --max-queries
        conn.close()
        assert (tmp_path / "idx" / "mem1_index.json").exists()  # the index was saved where --index said
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_serve_retriever_rejects_an_unknown_dataset(tmp_path):
    from mem1_gym.retrieval_server import cli

    assert cli(["--dataset", str(tmp_path / "missing.jsonl"), "--port", "0"]) == 2


@pytest.mark.parametrize("url", ["ftp://host/", "http://[::1", "http://host:port/", "no scheme"])
def test_client_rejects_bad_urls_clearly(url):
    with pytest.raises(ValueError, match="must look like http://host:port"):
        HttpRetriever(url)


@pytest.mark.parametrize("env_id", ["mem1_gym/MultiObjectiveQA-v0", "mem1_gym/WebSearchQA-v0"])
def test_envs_retrieve_through_a_shared_server(env_id):
    import gymnasium as gym

    from mem1_gym.data import load_dataset

    data = load_dataset("fictional", size=300)
    local = make_retriever("bm25s", data.corpus, data.fingerprint)
    with RetrievalServer(local) as srv:
        envs = [gym.make(env_id, n_objectives=2, dataset_size=300, retriever=srv.url) for _ in range(2)]
        try:
            for seed, env in enumerate(envs):
                env.reset(seed=seed)
                done = False
                while not done:
                    _, _, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
                    done = terminated or truncated
                assert info["metrics"]["em"] == 2.0
        finally:
            for env in envs:
                env.close()
        assert srv.health()["queries"] >= 4  # both envs' searches went through the server
