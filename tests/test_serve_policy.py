"""Tests of ``mem1 serve-policy`` and of the OpenAI-completions client policy against it."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from mem1_agent.evaluate import EvalConfig, OpenAICompletionsPolicy, run_eval
from mem1_agent.serve_policy import PolicyServer

from test_evaluate import LOOKUP_ENV  # registers the small lookup env

MODEL = "tiny"


@pytest.fixture(scope="module")
def server():
    from mem1_agent.models import load_policy

    model, tokenizer = load_policy(MODEL, value_head=False)
    with PolicyServer(("127.0.0.1", 0), model.eval(), tokenizer, MODEL, max_tokens_limit=64) as srv:
        yield srv


def _post(url: str, body: bytes | dict, path: str = "/v1/completions") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_health_and_models(server):
    assert _get(server.url + "/health")["status"] == "ok"
    assert [m["id"] for m in _get(server.url + "/v1/models")["data"]] == [MODEL]


def test_completions_batch_and_stop(server):
    status, out = _post(server.url, {"model": MODEL, "prompt": ["<IS> alpha", "the quick"], "max_tokens": 12,
                                     "temperature": 0})
    assert status == 200 and out["object"] == "text_completion"
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    first = out["choices"][0]
    assert first["finish_reason"] in ("stop", "length")
    text = first["text"]
    if len(text) < 6:
        pytest.skip(f"the random tiny model ended after {text!r}; nothing to cut")
    # Greedy decoding is deterministic: stopping at a piece of the earlier output cuts the text right before it.
    stop = text[3:6]
    status, again = _post(server.url, {"prompt": "<IS> alpha", "max_tokens": 12, "temperature": 0, "stop": [stop]})
    choice = again["choices"][0]
    assert status == 200 and choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    assert choice["text"] == text[: text.find(stop)]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        ({"max_tokens": 4}, 400, "prompt"),
        ({"prompt": [], "max_tokens": 4}, 400, "prompt"),
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": [1, 2, 3]}, 400, "prompt"),
        ({"prompt": "x", "model": "other"}, 404, "model"),
        ({"prompt": "x", "stream": True}, 400, "stream"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
        ({"prompt": "x", "temperature": -1}, 400, "temperature"),
        ({"prompt": "x", "stop": [""]}, 400, "stop"),
        ({"prompt": "x", "n": 2}, 400, "n"),
        (b"[1, 2]", 400, None),
    ],
)
def test_bad_requests_get_4xx(server, body, status, param):
    code, out = _post(server.url, body)
    assert code == status
    assert out["error"]["type"] == "invalid_request_error" and out["error"]["message"]
    assert out["error"]["param"] == param


def test_unknown_route_is_404(server):
    code, out = _post(server.url, {"prompt": "x"}, path="/v1/chat/completions")
    assert code == 404 and "no such endpoint" in out["error"]["message"]


def test_openai_policy_evaluates_an_episode_through_the_server(server, tmp_path):
    config = EvalConfig(policy=f"openai:{server.url}/v1#{MODEL}", envs=[LOOKUP_ENV], memories=["mem1"],
                        objectives=[1], seeds=[0], episodes=2, batch_size=2, max_new_tokens=8,
                        out_dir=str(tmp_path / "text"), progress=False)
    (row,) = run_eval(config)
    # The random tiny model writes no valid turn: it runs into the turn limit (N + 2 = 3 here).
    assert row["policy"] == f"openai:{MODEL}" and row["turns"] == 3 and row["em"] == 0
    assert row["inference_s"] > 0 and row["token_unit"] == "whitespace"

    # With the model's tokenizer the envs speak its tokens: counts are exact model tokens.
    from mem1_agent.models import tiny_tokenizer

    policy = OpenAICompletionsPolicy(server.url, MODEL, max_tokens=8, tokenizer=tiny_tokenizer())
    (tok_row,) = run_eval(EvalConfig(**{**config.__dict__, "out_dir": str(tmp_path / "tok")}), policy=policy)
    assert tok_row["token_unit"] != "whitespace" and tok_row["turns"] == 3
    assert tok_row["peak_tokens"] > row["peak_tokens"]  # BPE pieces outnumber whitespace words


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_serve_policy_command(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "mem1_agent.cli", "serve-policy", "--model", "tiny", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving 'tiny' on http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split(" on ")[1].strip().removesuffix("/v1/completions")
        assert _get(url + "/health")["model"] == "tiny"
        status, out = _post(url, {"prompt": "<IS>", "max_tokens": 3})
        assert status == 200 and len(out["choices"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_unreachable_server_is_a_clear_error(tmp_path, refused_port):
    policy = OpenAICompletionsPolicy(f"http://127.0.0.1:{refused_port}", MODEL, timeout=2, retries=1)
    with pytest.raises(RuntimeError, match="after 2 attempts"):
        policy.complete(["hello"])


@pytest.fixture(scope="module")
def capped():
    from mem1_agent.models import load_policy
    from mem1_agent.serve_policy import PolicyLimits

    model, tokenizer = load_policy(MODEL, value_head=False)
    limits = PolicyLimits(max_tokens=64, max_prompt_tokens=16, max_prompts=4, max_request_tokens=100)
    with PolicyServer(("127.0.0.1", 0), model.eval(), tokenizer, MODEL, limits=limits) as srv:
        yield srv


@pytest.mark.parametrize(
    ("body", "status", "param", "fragment"),
    [
        ({"prompt": "word " * 40, "max_tokens": 1}, 400, "prompt", "the limit is 16"),
        ({"prompt": "x" * 2000, "max_tokens": 1}, 400, "prompt", "longer than 1024 characters"),
        ({"prompt": ["a", "b", "c", "d", "e"], "max_tokens": 1}, 413, "prompt", "5 prompts in one request; the limit is 4"),
        ({"prompt": ["a b", "c d", "e f"], "max_tokens": 40}, 413, "max_tokens", "the limit is 100"),
    ],
)
def test_prompt_length_and_tokens_per_request_are_capped(capped, body, status, param, fragment):
    code, out = _post(capped.url, body)
    assert code == status and out["error"]["param"] == param and fragment in out["error"]["message"]
    assert _post(capped.url, {"prompt": ["a b", "c d"], "max_tokens": 2})[0] == 200  # within the caps


def test_a_small_request_completes_while_a_large_batch_is_in_progress():
    from mem1_agent.models import load_policy
    from mem1_agent.serve_policy import PolicyLimits

    model, tokenizer = load_policy(MODEL, value_head=False)
    # A chunk always holds one prompt at least: chunk_tokens=1 makes the big batch 32 chunks
    # of 16 tokens each: a few seconds of work, even on an idle machine.
    limits = PolicyLimits(max_tokens=64, chunk_tokens=1)
    big = {"prompt": [f"<IS> row {i}" for i in range(32)], "max_tokens": 16, "temperature": 0}
    result: dict[str, int] = {}
    with PolicyServer(("127.0.0.1", 0), model.eval(), tokenizer, MODEL, limits=limits) as srv:
        thread = threading.Thread(target=lambda: result.update(big=_post(srv.url, big)[0]))
        thread.start()
        deadline = time.monotonic() + 60
        while srv.scheduler.chunks_run < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the big batch is under way
        status, out = _post(srv.url, {"prompt": "<IS>", "max_tokens": 1, "temperature": 0})
        # With one lock per request the small one waited for the whole batch; now it waits for one chunk.
        still_running = thread.is_alive() and srv.scheduler.pending() == 1
        thread.join(timeout=300)
    assert status == 200 and out["usage"]["completion_tokens"] == 1
    assert still_running, "the 1-token request waited for the whole large batch"
    assert result["big"] == 200
