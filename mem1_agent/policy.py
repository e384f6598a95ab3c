"""The Hugging Face rollout engine: one batched generation loop shared by rollout, evaluation and serving.

:class:`LMPolicy` wraps a Hugging Face causal LM and its tokenizer and
implements :class:`~mem1_agent.engine.RolloutEngine` (turns are submitted,
finished turns come back from :meth:`LMPolicy.step`); :meth:`LMPolicy.generate`
runs a batch of turns to completion. It is a hand-written sampling loop over the
model's forward with a ``transformers`` ``DynamicCache`` (passed as ``cache=``,
or ``past_key_values=`` on releases before the rename), not ``model.generate``,
so that what it records is exactly what the trainers recompute:

* **continuous batching**: a request that finishes leaves the running batch at
  once and a newly submitted one is prefilled and joins it at the next
  :meth:`~LMPolicy.step`, so a slot never idles until the slowest row of its
  batch finishes; the prefill computes logits only at each row's last token
  (``logits_to_keep=1``);
* rows of the running batch are **right-aligned** in one batch cache (row ``i``
  holds its ``L_i`` cached tokens in the last ``L_i`` columns; the attention mask
  says so) and position ids count real tokens only, so a row's positions and
  log-probs do not depend on how much padding its batch needed — the same
  positions the stitched trajectory forward uses;
* each row stops at the first closing action tag of the tag set (``</query>``,
  ``</answer>``, ...), at an end-of-sequence token, or at ``max_new_tokens``;
* the cache of a finished turn is kept per key (an environment slot), and the
  next turn of that key reuses it for the leading tokens its context shares with
  the previous one (bounded by ``prefix_len``);
* for every generated token the **log-probability under the tempered model
  distribution** ``softmax(logits / temperature)`` (raw logits when greedy,
  ``temperature=0``) is recorded, before any top-k / top-p filtering. The
  trainers score the same tempered logits (``stitched_forward(...,
  temperature=)``), so the PPO ratio compares like with like: with
  ``top_k=0, top_p=1`` (the training default) it is exactly the log-probability
  of the sampling distribution; top-k / top-p filtering is not corrected for.

Greedy decoding gives the same ids whatever the batch composition (up to
floating-point ties); sampling consumes one shared generator in step order, so it
is reproducible for a given seed and schedule.
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import torch

from mem1_gym.protocol import TagSet, get_tag_set

from .engine import Generation, generate_batch

__all__ = ["Generation", "LMPolicy", "SamplingConfig"]

#: How many trailing generated tokens are decoded to look for a closing tag.
#: Every token decodes to at least one character, so this covers tags up to 16 characters.
_STOP_WINDOW = 16


@dataclass
class SamplingConfig:
    """Sampling settings of :class:`LMPolicy`.

    Attributes:
        max_new_tokens: per-turn token limit.
        temperature: 0 means greedy (argmax); 1 samples the model distribution.
        top_p: nucleus sampling threshold (1 disables it).
        top_k: keep only the k most likely tokens (0 disables it).
        reuse_prefix: keep each slot's KV cache between calls and reuse the shared prefix.
        continuous_batching: in :func:`~mem1_agent.rollout.rollout`, step a slot's env and submit its
            next turn as soon as its turn ends (False: every live slot generates one turn per round
            and the round waits for the slowest row, as static batching does).
        max_batch_size: most rows decoded together (0: no limit; further requests wait their turn).
        admit_min: while rows are running, admit waiting requests only once this many wait (or the
            oldest has waited ``admit_wait`` decode steps). Each admission is an extra prefill
            forward; gathering a few per prefill trades a little batch fullness for fewer forwards,
            which pays where a forward's fixed cost dominates (CPUs, small models). 1 admits at once.
        admit_wait: most decode steps a waiting request is held back by ``admit_min``.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    reuse_prefix: bool = True
    continuous_batching: bool = True
    max_batch_size: int = 0
    admit_min: int = 1
    admit_wait: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_batch_size < 0:
            raise ValueError(f"max_batch_size must be >= 0 (0: no limit), got {self.max_batch_size}")
        if self.admit_min < 1 or self.admit_wait < 0:
            raise ValueError(f"admit_min must be >= 1 and admit_wait >= 0, got {self.admit_min} and {self.admit_wait}")


@dataclass
class _SlotCache:
    """KV cache of one key's last sequence (context + generated tokens that were fed)."""

    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [heads, len, dim]


@dataclass
class _Request:
    rid: int
    key: Hashable | None
    context: list[int]
    prefix_len: int | None


@dataclass
class _Row:
    """A request in the running batch."""

    req: _Request
    length: int  # tokens of this row in the batch cache (context + generated tokens fed back)
    reused: int
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else list(source))
    return ids


def _cache_argument(lm: Any) -> str:
    """The forward keyword of the KV cache: ``cache`` (transformers >= 5.2x) or ``past_key_values`` (before)."""
    base = lm.get_base_model() if callable(getattr(lm, "get_base_model", None)) else lm  # through peft
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)  # read first: the old name warns where the new one exists
    return cache if cache is not None else out.past_key_values


class LMPolicy:
    """A causal LM plus sampling settings, acting on token-level observations (a :class:`~mem1_agent.engine.RolloutEngine`).

    Args:
        model: a Hugging Face causal LM (or anything whose forward takes ``input_ids``,
            ``attention_mask``, ``position_ids``, a ``DynamicCache``, ``use_cache`` and
            ``logits_to_keep`` and returns ``logits`` and the cache). A value-head wrapper is fine.
        tokenizer: its tokenizer (decodes to find closing tags).
        tags: tag set whose closing action tags stop generation, or ``stop_strings``.
        sampling: :class:`SamplingConfig`.
        stop_strings: explicit stop strings (overrides ``tags``).
        generator: a ``torch.Generator`` for reproducible sampling.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        tags: str | TagSet = "paper",
        sampling: SamplingConfig | None = None,
        stop_strings: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ):
        self.model = model
        # A value-head wrapper (``PolicyWithValue``) generates with its LM, which has the KV-cache API.
        self.lm = getattr(model, "lm", model)
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig()
        self.stop_strings = list(stop_strings) if stop_strings is not None else get_tag_set(tags).closing_tags()
        self.eos_ids = _eos_ids(self.lm, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0))
        self.generator = generator
        self._cache_arg = _cache_argument(self.lm)
        self._slots: dict[Hashable, _SlotCache] = {}
        self._ends_cache: dict[int, bool] = {}
        # Engine state: queued requests, the running batch (rows, their batch cache, next-token logits).
        self._next_rid = 0
        self._waiting: deque[_Request] = deque()
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._width = 0
        self._logits: torch.Tensor | None = None
        self._in_flight: set[Hashable] = set()
        self._held_steps = 0  # decode steps the oldest waiting request has been held back

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.lm.parameters()).device

    # -- public API -------------------------------------------------------------

    def reset_cache(self, key: Hashable | None = None) -> None:
        """Forget the cached KV of ``key`` (all slots when None)."""
        if key is None:
            self._slots.clear()
        else:
            self._slots.pop(key, None)

    def act(self, observations: Sequence[Any], infos: Sequence[dict] | None = None, keys: Sequence[Hashable] | None = None) -> list[Generation]:
        """Generate one turn per observation of a batch of ``TokenizedEnv``\\s.

        ``observations`` are token-id sequences of the visible context (``info["input_ids"]``,
        when present, is preferred since it is unpadded); ``info["prefix_len"]`` bounds the
        KV-cache reuse. ``keys`` name the slot of each row (e.g. env index) for cross-turn reuse.
        """
        contexts, prefix_lens = [], []
        for i, obs in enumerate(observations):
            info = infos[i] if infos is not None else {}
            ids = info.get("input_ids", obs) if isinstance(info, dict) else obs
            contexts.append([int(t) for t in (ids.tolist() if hasattr(ids, "tolist") else ids)])
            prefix_lens.append(info.get("prefix_len") if isinstance(info, dict) else None)
        return self.generate(contexts, prefix_lens=prefix_lens, keys=keys)

    def act_text(self, prompts: Sequence[str]) -> list[str]:
        """Text in, text out (no cache reuse): for quick evaluation and serving."""
        contexts = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return [g.text for g in self.generate(contexts)]

    def generate(
        self,
        contexts: Sequence[Sequence[int]],
        prefix_lens: Sequence[int | None] | None = None,
        keys: Sequence[Hashable] | None = None,
    ) -> list[Generation]:
        """Generate one turn for each context, as one batch run to completion.

        Args:
            contexts: token ids of each row's visible context (non-empty).
            prefix_lens: per row, how many leading tokens are unchanged since the same key's
                previous call (None: no bound); reuse is also limited to the ids that actually match.
            keys: per row, the slot whose cache is read and then replaced (None: no reuse).
        """
        if any(len(c) == 0 for c in contexts):
            raise ValueError("every context must hold at least one token")
        return generate_batch(self, contexts, prefix_lens, keys)

    # -- RolloutEngine ------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests submitted and not yet returned by :meth:`step`."""
        return len(self._waiting) + len(self._rows)

    def submit(self, context: Sequence[int], key: Hashable | None = None, prefix_len: int | None = None) -> int:
        """Queue one turn (see :class:`~mem1_agent.engine.RolloutEngine`); returns its request id."""
        ids = [int(t) for t in context]
        if not ids:
            raise ValueError("every context must hold at least one token")
        if key is not None:
            if key in self._in_flight:
                raise ValueError(f"key {key!r} already has a turn in flight; submit its next turn after it finishes")
            self._in_flight.add(key)
        rid = self._next_rid
        self._next_rid += 1
        self._waiting.append(_Request(rid, key, ids, prefix_len))
        return rid

    @torch.no_grad()
    def step(self) -> list[tuple[int, Generation]]:
        """Admit waiting requests (one prefill), sample a token for every running row, retire the
        rows that stopped, and run one decode forward for the others."""
        self._admit()
        if not self._rows:
            return []
        cfg = self.sampling
        assert self._logits is not None
        tokens, lps = self._sample(self._logits)
        finished: list[int] = []
        # One device-to-host copy per step, not one per row.
        for i, (row, t, lp) in enumerate(zip(self._rows, tokens.tolist(), lps.tolist())):
            row.ids.append(t)
            row.logprobs.append(lp)
            if t in self.eos_ids or self._hit_stop(row.ids) or len(row.ids) >= cfg.max_new_tokens:
                finished.append(i)
        out = [(self._rows[i].req.rid, self._finish(i)) for i in finished]
        if finished:
            gone = set(finished)
            keep = [i for i in range(len(self._rows)) if i not in gone]
            self._select(keep)
            tokens = tokens[torch.tensor(keep, dtype=torch.long, device=tokens.device)]
        if self._rows:
            self._decode(tokens)
        return out

    # -- internals --------------------------------------------------------------

    def _forward(self, **inputs: Any) -> tuple[torch.Tensor, Any]:
        """One LM forward with the cache under the keyword this transformers release expects."""
        cache = inputs.pop("cache")
        out = self.lm(**inputs, **{self._cache_arg: cache}, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float(), _output_cache(out)

    def _admit(self) -> None:
        """Prefill waiting requests (up to ``max_batch_size`` rows) and merge them into the running batch."""
        cfg = self.sampling
        room = len(self._waiting) if cfg.max_batch_size == 0 else cfg.max_batch_size - len(self._rows)
        if room <= 0 or not self._waiting:
            return
        if self._rows and min(room, len(self._waiting)) < cfg.admit_min and self._held_steps < cfg.admit_wait:
            self._held_steps += 1
            return
        self._held_steps = 0
        group = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
        logits, cache, width, rows = self._prefill(group)
        if not self._rows:
            self._rows, self._cache, self._width, self._logits = rows, cache, width, logits
            return
        # Both batches are right-aligned: left-pad the narrower one with zero columns (masked out).
        total = max(self._width, width)
        for mine, theirs in zip(self._cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, total), _left_pad(theirs.keys, total)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, total), _left_pad(theirs.values, total)], dim=0)
        self._rows += rows
        self._width = total
        self._logits = torch.cat([self._logits, logits], dim=0)  # type: ignore[list-item]

    def _prefill(self, group: list[_Request]) -> tuple[torch.Tensor, Any, int, list[_Row]]:
        """Left-padded prefill of new requests, reusing each key's cached prefix where it matches."""
        from transformers import DynamicCache

        cfg = self.sampling
        device = self.device
        n = len(group)
        contexts = [r.context for r in group]
        lengths = [len(c) for c in contexts]
        width = max(lengths)
        pads = [width - L for L in lengths]
        # How many leading tokens each row can take from its key's cache; at least one
        # context token is always fed so the prefill yields the next-token logits.
        reuse = [0] * n
        slots: list[_SlotCache | None] = [None] * n
        if cfg.reuse_prefix:
            for i, req in enumerate(group):
                slot = self._slots.get(req.key) if req.key is not None else None
                if slot is None:
                    continue
                usable = min(_common_prefix(slot.ids, contexts[i]), lengths[i] - 1)
                if req.prefix_len is not None:
                    usable = min(usable, int(req.prefix_len))
                reuse[i], slots[i] = max(usable, 0), slot
        # Cached columns are shared by the group: the padded layout is [pad_i | context_i], so the
        # first ``cached`` columns must be pad or reusable for every row.
        cached = min(pads[i] + reuse[i] for i in range(n)) if any(s is not None for s in slots) else 0

        mask = torch.zeros(n, width, dtype=torch.long)
        for i in range(n):
            mask[i, pads[i]:] = 1
        input_ids = torch.full((n, width - cached), self.pad_id, dtype=torch.long)
        for i in range(n):
            row = contexts[i][max(cached - pads[i], 0):]
            input_ids[i, width - cached - len(row):] = torch.tensor(row, dtype=torch.long)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # A config-less DynamicCache has one plain (full) layer per decoder layer: column arithmetic
        # below holds for it, while a config-built one could hold sliding-window layers.
        cache = self._batch_cache(slots, pads, cached, device) if cached > 0 else DynamicCache()
        logits, cache = self._forward(
            input_ids=input_ids.to(device), attention_mask=mask.to(device),
            position_ids=positions[:, cached:].to(device), cache=cache,
        )
        rows = [_Row(req, lengths[i], max(cached - pads[i], 0)) for i, req in enumerate(group)]
        return logits, cache, width, rows

    def _decode(self, tokens: torch.Tensor) -> None:
        """Feed each running row its last sampled token: one new column for every row."""
        device = self.device
        lengths = torch.tensor([r.length for r in self._rows], dtype=torch.long)
        total = self._width + 1
        mask = (torch.arange(total)[None, :] >= total - (lengths + 1)[:, None]).long()
        self._logits, self._cache = self._forward(
            input_ids=tokens[:, None].to(device), attention_mask=mask.to(device),
            position_ids=lengths[:, None].to(device), cache=self._cache,
        )
        self._width = total
        for r in self._rows:
            r.length += 1

    def _finish(self, i: int) -> Generation:
        """The generation of row ``i``; keep its cache for the key's next turn."""
        row = self._rows[i]
        req = row.req
        if req.key is not None:
            self._in_flight.discard(req.key)
            if self.sampling.reuse_prefix:
                # The last sampled token was never fed, so the cache holds context + ids[:-1].
                ids = req.context + row.ids[:-1]
                start = self._width - row.length
                kv = [(layer.keys[i, :, start:].clone(), layer.values[i, :, start:].clone()) for layer in self._cache.layers]
                if row.length == len(ids):
                    self._slots[req.key] = _SlotCache(ids=ids, kv=kv)
                else:  # should not happen; never reuse a cache we cannot align
                    self._slots.pop(req.key, None)
        stop = "eos" if row.ids[-1] in self.eos_ids else "tag" if self._hit_stop(row.ids) else "length"
        text = self.tokenizer.decode(row.ids, skip_special_tokens=False)
        return Generation(ids=row.ids, logprobs=row.logprobs, text=text, stop=stop, reused=row.reused)

    def _select(self, keep: list[int]) -> None:
        """Keep only rows ``keep`` and drop the leading columns no remaining row uses."""
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache, self._width, self._logits = None, 0, None
            return
        assert self._logits is not None
        index = torch.tensor(keep, dtype=torch.long, device=self._logits.device)
        self._logits = self._logits.index_select(0, index)
        longest = max(r.length for r in self._rows)
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))[:, :, self._width - longest :]
            layer.values = layer.values.index_select(0, index.to(layer.values.device))[:, :, self._width - longest :]
        self._width = longest

    def _sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one token per row; return it and its log-probability under ``logits / temperature``."""
        cfg = self.sampling
        if cfg.temperature == 0:
            logp = torch.log_softmax(logits, dim=-1)
            tokens = logits.argmax(dim=-1)
        else:
            scores = logits / cfg.temperature
            logp = torch.log_softmax(scores, dim=-1)
            if cfg.top_k > 0:
                kth = torch.topk(scores, min(cfg.top_k, scores.size(-1)), dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            if cfg.top_p < 1.0:
                sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
                probs = torch.softmax(sorted_scores, dim=-1)
                # Drop a token when the mass before it already reaches top_p (the top token always stays).
                drop = (probs.cumsum(-1) - probs) >= cfg.top_p
                sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
                scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
            probs = torch.softmax(scores, dim=-1)
            tokens = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)

    def _hit_stop(self, ids: list[int]) -> bool:
        # A stop string can only complete on a token whose text holds the string's last character;
        # checking that per token id (cached) spares a tail decode at almost every step.
        last = ids[-1]
        may_end = self._ends_cache.get(last)
        if may_end is None:
            piece = self.tokenizer.decode([last], skip_special_tokens=False)
            # Byte-level pieces that do not decode alone (replacement char) are checked the slow way.
            may_end = "\ufffd" in piece or any(s[-1] in piece for s in self.stop_strings if s)
            self._ends_cache[last] = may_end
        if not may_end:
            return False
        tail = self.tokenizer.decode(ids[-_STOP_WINDOW:], skip_special_tokens=False)
        return any(s in tail for s in self.stop_strings)

    def _batch_cache(self, slots: list[_SlotCache | None], pads: list[int], cached: int, device: torch.device) -> Any:
        """Left-padded batch KV cache of the first ``cached`` columns from the slots' caches."""
        from transformers import DynamicCache

        some = next(s for s in slots if s is not None)
        layers = []
        for layer in range(len(some.kv)):
            keys, values = [], []
            like = some.kv[layer][0]
            for i, slot in enumerate(slots):
                # A row padded beyond the cached columns contributes padding only.
                take = max(cached - pads[i], 0)
                pad_k = like.new_zeros(like.shape[0], cached - take, like.shape[2])
                if slot is None:  # take == 0 here: only padding columns
                    keys.append(pad_k)
                    values.append(pad_k)
                    continue
                k, v = slot.kv[layer]
                keys.append(torch.cat([pad_k, k[:, :take]], dim=1))
                values.append(torch.cat([pad_k, v[:, :take]], dim=1))
            layers.append((torch.stack(keys).to(device), torch.stack(values).to(device)))
        return DynamicCache(layers)


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero columns on the left of a (batch, heads, len, dim) cache tensor up to ``width``."""
    return torch.nn.functional.pad(x, (0, 0, width - x.shape[2], 0))
