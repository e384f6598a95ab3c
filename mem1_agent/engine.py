"""The rollout engine interface: a turn in, token ids and their log-probs out.

Rollout (:func:`mem1_agent.rollout.rollout`), evaluation and serving talk to a
generation backend only through :class:`RolloutEngine`, so a different backend
(a vLLM or SGLang server, say) can replace the Hugging Face one without touching
the trainers. The contract is request-based, like the engines of those servers,
so that a backend can batch continuously:

* :meth:`RolloutEngine.submit` queues one turn: the context's token ids, an
  optional cache ``key`` (an environment slot, whose previous context may share
  a prefix with this one) and ``prefix_len`` (how many leading tokens are known
  to be unchanged since that key's previous turn);
* :meth:`RolloutEngine.step` advances every running request by (at least) one
  token and returns the requests that finished, as ``(request id, Generation)``;
  a caller can submit the next turn of a finished slot right away, and the
  engine admits it while the others are still decoding.

A :class:`Generation` holds the generated ids verbatim and, per id, the
log-probability under the tempered model distribution ``softmax(logits / temperature)``
(raw logits when greedy) at generation time — what the stitched-trajectory trainer
recomputes, at the same temperature, and compares with. An engine whose
numerics differ from the trainer's (another kernel, another precision) is usable
by a trainer that recomputes the old log-probs in its own precision; the ids,
though, must always be the exact sampled ids, never a re-tokenisation of the text.

:class:`mem1_agent.policy.LMPolicy` is the Hugging Face implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Protocol, Sequence, runtime_checkable


@dataclass
class Generation:
    """One generated turn.

    Attributes:
        ids: generated token ids, verbatim (hand them to ``TokenizedEnv.step``).
        logprobs: per-token log-probability under the tempered model distribution ``softmax(logits / temperature)``
            (raw logits when greedy), the distribution the trainers score.
        text: ``ids`` decoded.
        stop: why generation ended: ``"tag"``, ``"eos"`` or ``"length"``.
        reused: how many context tokens came from the cache of the key's previous turn.
    """

    ids: list[int]
    logprobs: list[float]
    text: str
    stop: str
    reused: int = 0


@runtime_checkable
class RolloutEngine(Protocol):
    """A generation backend: turns are submitted, finished turns come back from :meth:`step`."""

    def submit(self, context: Sequence[int], key: Hashable | None = None, prefix_len: int | None = None) -> int:
        """Queue one turn generated from ``context`` (non-empty token ids); returns its request id.

        ``key`` names a cache slot (at most one request in flight per key); ``prefix_len``
        bounds how many leading tokens may be served from that slot's previous turn.
        """
        ...

    def step(self) -> list[tuple[int, Generation]]:
        """Advance the running requests; return those that finished, with their generations."""
        ...

    @property
    def pending(self) -> int:
        """Requests submitted and not yet returned by :meth:`step`."""
        ...

    def reset_cache(self, key: Hashable | None = None) -> None:
        """Forget what is cached for ``key`` (every key when None)."""
        ...


def generate_batch(
    engine: RolloutEngine,
    contexts: Sequence[Sequence[int]],
    prefix_lens: Sequence[int | None] | None = None,
    keys: Sequence[Hashable] | None = None,
) -> list[Generation]:
    """Submit one turn per context and step until all are done (static batching); results in order.

    The engine must be idle: results of requests submitted by someone else would be lost.
    """
    if engine.pending:
        raise RuntimeError(f"generate_batch needs an idle engine; {engine.pending} requests are in flight")
    rids = [
        engine.submit(ctx, key=None if keys is None else keys[i], prefix_len=None if prefix_lens is None else prefix_lens[i])
        for i, ctx in enumerate(contexts)
    ]
    done: dict[int, Generation] = {}
    while engine.pending:
        done.update(engine.step())
    return [done[r] for r in rids]
