"""``mem1 serve-policy``: an HF causal LM behind an OpenAI-compatible completions API.

Serves ``POST /v1/completions`` (non-streaming; ``prompt`` a string or a list
of strings; ``max_tokens``, ``temperature``, ``top_p``, ``stop``), plus
``GET /v1/models`` and ``GET /health``, on Starlette/uvicorn (:mod:`mem1_http`).
Any client of that API (``mem1 eval --policy openai:URL#MODEL``, the
``openai`` package, vLLM's benchmark tools) can drive the model; the same
client evaluates a large model served elsewhere by vLLM.

Like vLLM, a choice also names the stop string that ended it in
``stop_reason``, since the text itself leaves the stop string out.

Limits (:class:`PolicyLimits`): each prompt holds at most ``max_prompt_tokens`` tokens
(400 above, like OpenAI's context-length error), a request at most ``max_prompts``
prompts and ``max_request_tokens`` tokens (its prompts plus ``max_tokens`` for each;
413 above). One thread owns the model; it takes work in chunks of at most
``chunk_tokens`` tokens, round-robin across the requests waiting, so a large batch
cannot hold the model while a one-token request times out behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mem1_http import ASGIService, HTTPError, HTTPLimits, error_handlers, read_json, thread_signal, check_port

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


def complete_ids(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
) -> list[Completion]:
    """Generate one completion per tokenized prompt, as one batch of the project's
    :class:`~mem1_agent.policy.LMPolicy`.

    ``temperature`` 0 is greedy decoding. A row stops at end of sequence or once
    a ``stop`` string appears; the text is cut before it (the OpenAI semantics).
    """
    from .policy import LMPolicy, SamplingConfig

    sampling = SamplingConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, reuse_prefix=False)
    policy = LMPolicy(model, tokenizer, sampling=sampling, stop_strings=list(stop))
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


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
) -> list[Completion]:
    """:func:`complete_ids` for prompt texts. Prompts are tokenized as they are (no special
    tokens added): a chat template, if wanted, is part of the prompt text."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not ids for ids in encoded):
        raise RequestError(400, "every prompt must hold at least one token", "prompt")
    return complete_ids(model, tokenizer, encoded, max_tokens, temperature, top_p, stop)


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class PolicyLimits:
    """What one completions request may ask of the model.

    Attributes:
        max_tokens: the largest ``max_tokens`` a request may ask for.
        max_prompt_tokens: the longest prompt, in tokens.
        max_prompts: the most prompts in one request.
        max_request_tokens: the most tokens in one request: its prompts' tokens plus
            ``max_tokens`` for each prompt.
        chunk_tokens: the model works on one request at a time in chunks of prompts holding
            at most this many tokens (prompt plus ``max_tokens`` each; at least one prompt),
            taken round-robin from the requests waiting.
        request_timeout: seconds a request may wait for its completions (503 after).
    """

    max_tokens: int = 4096
    max_prompt_tokens: int = 8192
    max_prompts: int = 256
    max_request_tokens: int = 262_144
    chunk_tokens: int = 8192
    request_timeout: float = 600.0


def _error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class RequestError(HTTPError):
    """A bad request: becomes an OpenAI-style error body with a 4xx status, naming the parameter."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(status, message)
        self.param = param


def _number(body: dict, key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise RequestError(400, f"'{key}' must be {'an integer' if integer else 'a number'}", key)
    if not low <= value <= high:
        raise RequestError(400, f"'{key}' must be between {low} and {high}, got {value}", key)
    return value


def parse_completion_request(body: Any, model_name: str, max_tokens_limit: int) -> dict[str, Any]:
    """Validate a ``/v1/completions`` body; return the generation arguments.

    Raises:
        RequestError: what is wrong, with the status to answer.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported; leave 'stream' false", "stream")
    model = body.get("model")
    if model is not None and model != model_name:
        raise RequestError(404, f"model {model!r} is not served here; this server serves {model_name!r}", "model")
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError(400, "'prompt' must be a string or a non-empty list of strings", "prompt")
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError(400, "only n=1 and best_of=1 are supported", "n")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(400, "'stop' must be a string or a list of non-empty strings", "stop")
    return {
        "prompts": prompts,
        "max_tokens": int(_number(body, "max_tokens", 16, 1, max_tokens_limit, integer=True)),
        "temperature": float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        "top_p": float(_number(body, "top_p", 1.0, 1e-6, 1.0)),
        "stop": stop,
    }


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str], max_tokens: int, limits: PolicyLimits) -> list[list[int]]:
    """Token ids of each prompt, checked against ``limits``.

    Raises:
        RequestError: 400 for an empty or too long prompt, 413 for too many prompts or tokens.
    """
    if len(prompts) > limits.max_prompts:
        raise RequestError(413, f"{len(prompts)} prompts in one request; the limit is {limits.max_prompts}", "prompt")
    # A token spans a few characters: text this long cannot fit, and is not worth tokenizing.
    max_chars = 64 * limits.max_prompt_tokens
    if any(len(p) > max_chars for p in prompts):
        raise RequestError(400, f"a prompt is longer than {max_chars} characters; the limit is {limits.max_prompt_tokens} tokens", "prompt")
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not ids for ids in encoded):
        raise RequestError(400, "every prompt must hold at least one token", "prompt")
    longest = max(len(ids) for ids in encoded)
    if longest > limits.max_prompt_tokens:
        raise RequestError(400, f"a prompt has {longest} tokens; the limit is {limits.max_prompt_tokens}", "prompt")
    total = sum(len(ids) + max_tokens for ids in encoded)
    if total > limits.max_request_tokens:
        raise RequestError(
            413, f"the request needs {total} tokens (prompts plus max_tokens for each); the limit is {limits.max_request_tokens}",
            "max_tokens",
        )
    return encoded


@dataclass
class _Work:
    """One request's prompts, answered chunk by chunk by the scheduler thread."""

    encoded: list[list[int]]
    args: dict[str, Any]
    chunks: deque[range]
    on_done: Callable[[], None]
    results: list[Completion] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False


def completion_response(model_name: str, results: Sequence[Completion]) -> dict[str, Any]:
    """The OpenAI ``text_completion`` answer for ``results``."""
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(r.completion_tokens for r in results)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {"index": i, "text": r.text, "finish_reason": r.finish_reason, "stop_reason": r.stop_reason, "logprobs": None}
            for i, r in enumerate(results)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class _FairScheduler:
    """The one thread that runs the model, taking chunks round-robin from the requests waiting."""

    def __init__(self, model: Any, tokenizer: Any, chunk_tokens: int):
        self.model = model
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.chunks_run = 0
        self._waiting: deque[_Work] = deque()
        self._running: _Work | None = None  # the request whose chunk the model is on, out of the queue meanwhile
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="policy-generation", daemon=True)
        self._thread.start()

    def submit(self, encoded: list[list[int]], args: dict[str, Any], on_done: Callable[[], None]) -> _Work:
        """Queue a request's prompts; ``on_done`` is called from the scheduler thread when all are answered."""
        budget = [len(ids) + args["max_tokens"] for ids in encoded]
        chunks: deque[range] = deque()
        start = 0
        while start < len(encoded):
            end, used = start + 1, budget[start]
            while end < len(encoded) and used + budget[end] <= self.chunk_tokens:
                used += budget[end]
                end += 1
            chunks.append(range(start, end))
            start = end
        work = _Work(encoded, args, chunks, on_done)
        with self._cond:
            self._waiting.append(work)
            self._cond.notify()
        return work

    def pending(self) -> int:
        """Requests waiting or in progress."""
        with self._cond:
            return len(self._waiting) + (self._running is not None)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                work = self._waiting.popleft()
                self._running = work
            if work.cancelled:
                with self._cond:
                    self._running = None
                continue
            chunk = work.chunks.popleft()
            try:
                work.results.extend(complete_ids(self.model, self.tokenizer, [work.encoded[i] for i in chunk], **work.args))
                self.chunks_run += 1
            except Exception as exc:  # reported to the client as a 500
                work.error = f"{type(exc).__name__}: {exc}"
                work.chunks.clear()
            with self._cond:
                self._running = None
                if work.chunks:
                    self._waiting.append(work)  # to the back: the others get their turn first
            if not work.chunks:
                work.on_done()


class PolicyServer(ASGIService):
    """Serves a model with the OpenAI completions API on uvicorn (see
    :class:`~mem1_http.service.ASGIService` for starting and closing).

    Args:
        address: ``(host, port)`` to bind; port 0 picks a free one.
        model, tokenizer: the policy and its tokenizer.
        model_name: the name clients ask for.
        max_tokens_limit: the largest ``max_tokens`` a request may ask for (overrides ``limits.max_tokens``).
        limits: prompt, token and scheduling limits (see :class:`PolicyLimits`).
        http_limits: connection-level limits (timeouts, connection cap, body size).
    """

    thread_name = "policy-server"

    def __init__(self, address: tuple[str, int], model: Any, tokenizer: Any, model_name: str,
                 max_tokens_limit: int | None = None, limits: PolicyLimits | None = None,
                 http_limits: HTTPLimits | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        limits = limits or PolicyLimits()
        if max_tokens_limit is not None:
            limits = PolicyLimits(**{**limits.__dict__, "max_tokens": max_tokens_limit})
        self.limits = limits
        self.max_tokens_limit = limits.max_tokens
        app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET", "HEAD"]),
                Route("/v1/models", self._models, methods=["GET", "HEAD"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
            ],
            exception_handlers=error_handlers(lambda status, message: JSONResponse(_error_body(status, message), status_code=status)),
        )
        http_limits = http_limits or HTTPLimits(max_body_bytes=MAX_BODY_BYTES)
        super().__init__(app, *address, limits=http_limits)
        self.scheduler = _FairScheduler(model, tokenizer, limits.chunk_tokens)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_name, "pending_requests": self.scheduler.pending()})

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "mem1"}]})

    async def _completions(self, request: Request) -> Response:
        http = self.http_limits
        try:
            body = await read_json(request, http.max_body_bytes, http.body_timeout, http.max_json_depth)
            args = parse_completion_request(body, self.model_name, self.limits.max_tokens)
            # Tokenizing a long prompt takes a while: off the event loop, and off the model's thread.
            encoded = await run_in_threadpool(tokenize_prompts, self.tokenizer, args.pop("prompts"), args["max_tokens"], self.limits)
        except HTTPError as err:
            response = JSONResponse(_error_body(err.status, err.message, getattr(err, "param", None)), status_code=err.status)
            if err.close:
                response.headers["connection"] = "close"
            return response
        return JSONResponse(completion_response(self.model_name, await self._generate(encoded, args)))

    async def _generate(self, encoded: list[list[int]], args: dict[str, Any]) -> list[Completion]:
        done, notify = thread_signal()
        work = self.scheduler.submit(encoded, args, on_done=notify)
        try:
            await asyncio.wait_for(done, self.limits.request_timeout)
        except asyncio.TimeoutError:
            work.cancelled = True
            raise HTTPError(503, f"generation took longer than {self.limits.request_timeout:g} s") from None
        except asyncio.CancelledError:
            work.cancelled = True  # the client went away: its remaining chunks are dropped
            raise
        if work.error is not None:
            raise HTTPError(500, f"generation failed: {work.error}")
        return work.results

    def complete(self, body: Any) -> dict[str, Any]:
        """Answer one completions request body in-process (a dict in the OpenAI response format)."""
        args = parse_completion_request(body, self.model_name, self.limits.max_tokens)
        encoded = tokenize_prompts(self.tokenizer, args.pop("prompts"), args["max_tokens"], self.limits)
        done = threading.Event()
        work = self.scheduler.submit(encoded, args, on_done=done.set)
        done.wait()
        if work.error is not None:
            raise HTTPError(500, f"generation failed: {work.error}")
        return completion_response(self.model_name, work.results)

    def close(self) -> None:
        """Stop serving, release the port and stop the generation thread."""
        super().close()
        self.scheduler.stop()


def cli(argv: list[str]) -> int:
    """``mem1 serve-policy --model tiny|default|PATH [--host H] [--port P] [--name NAME]``."""
    p = argparse.ArgumentParser(prog="mem1 serve-policy", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="tiny | default | an HF model path or id")
    p.add_argument("--name", default=None, help="model name clients send (default: the --model value)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    d = PolicyLimits()
    p.add_argument("--max-tokens-limit", type=int, default=d.max_tokens, help=f"largest max_tokens a request may ask (default: {d.max_tokens})")
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens, help=f"longest prompt in tokens (default: {d.max_prompt_tokens})")
    p.add_argument("--max-prompts", type=int, default=d.max_prompts, help=f"most prompts in one request (default: {d.max_prompts})")
    p.add_argument("--max-request-tokens", type=int, default=d.max_request_tokens,
                   help=f"most tokens in one request, prompts plus max_tokens each (default: {d.max_request_tokens})")
    p.add_argument("--chunk-tokens", type=int, default=d.chunk_tokens,
                   help=f"tokens of work the model does for one request before the next waiting one gets a turn (default: {d.chunk_tokens})")
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
        limits = PolicyLimits(
            max_tokens=args.max_tokens_limit, max_prompt_tokens=args.max_prompt_tokens, max_prompts=args.max_prompts,
            max_request_tokens=args.max_request_tokens, chunk_tokens=args.chunk_tokens,
        )
        server = PolicyServer((args.host, args.port), model, tokenizer, args.name or args.model, limits=limits)
    except OSError as err:
        print(f"mem1 serve-policy: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    server.serve_until_interrupted(f"serving {server.model_name!r} on {server.url}/v1/completions")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
