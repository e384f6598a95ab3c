"""``mem1 serve-policy``: an HF causal LM behind an OpenAI-compatible completions API.

Serves ``POST /v1/completions`` (non-streaming; ``prompt`` a string or a list
of strings; ``max_tokens``, ``temperature``, ``top_p``, ``stop``), plus
``GET /v1/models`` and ``GET /health``, with the standard library's HTTP
server. Any client of that API (``mem1 eval --policy openai:URL#MODEL``, the
``openai`` package, vLLM's benchmark tools) can drive the model; the same
client evaluates a large model served elsewhere by vLLM.

Like vLLM, a choice also names the stop string that ended it in
``stop_reason``, since the text itself leaves the stop string out.
Requests are served one generation at a time (a list of prompts is one batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Sequence

from webshop_env.http_service import HTTPService, OwnedHTTPServer, check_port

from .threads import add_threads_argument, apply_threads

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 8 * 2**20


@dataclass
class Completion:
    """One generated continuation.

    Attributes:
        text: generated text, cut before the first stop string.
        finish_reason: ``stop`` (a stop string or end of sequence) or ``length``.
        stop_reason: the stop string that ended it, or None.
        prompt_tokens: tokens of the prompt.
        completion_tokens: tokens generated.
    """

    text: str
    finish_reason: str
    stop_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
) -> list[Completion]:
    """Generate one completion per prompt, as one batch of the project's :class:`~mem1_agent.policy.LMPolicy`.

    ``temperature`` 0 is greedy decoding. A row stops at end of sequence or once
    a ``stop`` string appears; the text is cut before it (the OpenAI semantics).
    Prompts are tokenized as they are (no special tokens added): a chat
    template, if wanted, is part of the prompt text.
    """
    from .policy import LMPolicy, SamplingConfig

    sampling = SamplingConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, reuse_prefix=False)
    policy = LMPolicy(model, tokenizer, sampling=sampling, stop_strings=list(stop))
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not ids for ids in encoded):
        raise RequestError(HTTPStatus.BAD_REQUEST, "every prompt must hold at least one token", "prompt")
    completions = []
    for gen, ids in zip(policy.generate(encoded), encoded):
        generated = gen.ids[:-1] if gen.stop == "eos" else gen.ids
        text = tokenizer.decode(generated, skip_special_tokens=False)
        hits = [(text.find(s), s) for s in stop if s in text]
        if hits:
            cut, matched = min(hits)
            completions.append(Completion(text[:cut], "stop", matched, len(ids), len(gen.ids)))
        else:
            reason = "length" if gen.stop == "length" else "stop"
            completions.append(Completion(text, reason, None, len(ids), len(gen.ids)))
    return completions


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RequestError(Exception):
    """A bad request: becomes an OpenAI-style error body with a 4xx status."""

    def __init__(self, status: HTTPStatus, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


def _number(body: dict, key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'{key}' must be {'an integer' if integer else 'a number'}", key)
    if not low <= value <= high:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'{key}' must be between {low} and {high}, got {value}", key)
    return value


def parse_completion_request(body: Any, model_name: str, max_tokens_limit: int) -> dict[str, Any]:
    """Validate a ``/v1/completions`` body; return the generation arguments.

    Raises:
        RequestError: what is wrong, with the status to answer.
    """
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    if body.get("stream"):
        raise RequestError(HTTPStatus.BAD_REQUEST, "streaming is not supported; leave 'stream' false", "stream")
    model = body.get("model")
    if model is not None and model != model_name:
        raise RequestError(HTTPStatus.NOT_FOUND, f"model {model!r} is not served here; this server serves {model_name!r}", "model")
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string or a non-empty list of strings", "prompt")
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "only n=1 and best_of=1 are supported", "n")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'stop' must be a string or a list of non-empty strings", "stop")
    return {
        "prompts": prompts,
        "max_tokens": int(_number(body, "max_tokens", 16, 1, max_tokens_limit, integer=True)),
        "temperature": float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        "top_p": float(_number(body, "top_p", 1.0, 1e-6, 1.0)),
        "stop": stop,
    }


class PolicyServer(HTTPService):
    """Serves a model with the OpenAI completions API (see :class:`~webshop_env.http_service.HTTPService`
    for starting and closing); a lock lets one generation run at a time.

    Args:
        address: ``(host, port)`` to bind; port 0 picks a free one.
        model, tokenizer: the policy and its tokenizer.
        model_name: the name clients ask for.
        max_tokens_limit: the largest ``max_tokens`` a request may ask for.
    """

    thread_name = "policy-server"

    def __init__(self, address: tuple[str, int], model: Any, tokenizer: Any, model_name: str,
                 max_tokens_limit: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_tokens_limit = max_tokens_limit
        self.lock = threading.Lock()
        super().__init__(_Handler, *address)

    def complete(self, body: Any) -> dict[str, Any]:
        """Answer one completions request body (a dict in the OpenAI response format)."""
        args = parse_completion_request(body, self.model_name, self.max_tokens_limit)
        with self.lock:
            results = generate_completions(self.model, self.tokenizer, **args)
        prompt_tokens = sum(r.prompt_tokens for r in results)
        completion_tokens = sum(r.completion_tokens for r in results)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {"index": i, "text": r.text, "finish_reason": r.finish_reason, "stop_reason": r.stop_reason,
                 "logprobs": None}
                for i, r in enumerate(results)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it so)
        # Quiet by default: an evaluation sends thousands of requests.
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, param: str | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok", "model": self.server.owner.model_name})
        elif self.path == "/v1/models":
            self._send(HTTPStatus.OK, {"object": "list", "data": [
                {"id": self.server.owner.model_name, "object": "model", "created": 0, "owned_by": "mem1"}]})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/completions":
            self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; use /v1/completions")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length > MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY_BYTES} bytes")
            self.close_connection = True
            return
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {err}")
            return
        try:
            self._send(HTTPStatus.OK, self.server.owner.complete(body))
        except RequestError as err:
            self._error(err.status, str(err), err.param)
        except Exception as err:  # a generation failure must answer, not hang the client
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {type(err).__name__}: {err}")


def cli(argv: list[str]) -> int:
    """``mem1 serve-policy --model tiny|default|PATH [--host H] [--port P] [--name NAME]``."""
    p = argparse.ArgumentParser(prog="mem1 serve-policy", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="tiny | default | an HF model path or id")
    p.add_argument("--name", default=None, help="model name clients send (default: the --model value)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda | cuda:N")
    add_threads_argument(p)
    args = p.parse_args(argv)
    from .models import load_policy

    try:
        check_port(args.port)
    except ValueError as err:
        print(f"mem1 serve-policy: {err}", file=sys.stderr)
        return 2
    apply_threads(args.threads)
    try:
        model, tokenizer = load_policy(args.model, value_head=False)
    except (OSError, ValueError) as err:
        print(f"mem1 serve-policy: cannot load model {args.model!r}: {err}", file=sys.stderr)
        return 2
    model.to(resolve_device(args.device)).eval()
    try:
        server = PolicyServer((args.host, args.port), model, tokenizer, args.name or args.model, args.max_tokens_limit)
    except OSError as err:
        print(f"mem1 serve-policy: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    server.serve_until_interrupted(f"serving {server.model_name!r} on {server.url}/v1/completions")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
