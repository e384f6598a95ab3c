"""The LLM policy: one batched generation loop shared by rollout, evaluation and serving.

:class:`LMPolicy` wraps a Hugging Face causal LM and its tokenizer. Its
:meth:`LMPolicy.generate` is a hand-written sampling loop (model forward with
``past_key_values``), not ``model.generate``, so that what it records is exactly
what the trainers recompute:

* contexts of uneven length are **left-padded**; position ids count real tokens
  only (``cumsum(attention_mask) - 1``), so a row's positions do not depend on
  how much padding its batch needed — the same positions the stitched
  trajectory forward uses;
* each row stops at the first closing action tag of the tag set (``</query>``,
  ``</answer>``, ...), at an end-of-sequence token, or at ``max_new_tokens``;
* the KV cache is reused within a turn (one prefill, then one token per step)
  and, across turns, for the leading tokens a context shares with what the
  same key (an environment slot) saw last time (``prefix_len``);
* for every generated token the **log-probability under the tempered model
  distribution** ``softmax(logits / temperature)`` (raw logits when greedy,
  ``temperature=0``) is recorded, before any top-k / top-p filtering. The
  trainers score the same tempered logits (``stitched_forward(...,
  temperature=)``), so the PPO ratio compares like with like: with
  ``top_k=0, top_p=1`` (the training default) it is exactly the log-probability
  of the sampling distribution; top-k / top-p filtering is not corrected for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import torch

from mem1_gym.protocol import TagSet, get_tag_set

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
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    reuse_prefix: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass
class Generation:
    """One generated turn.

    Attributes:
        ids: generated token ids, verbatim (hand them to ``TokenizedEnv.step``).
        logprobs: per-token log-probability under the tempered model distribution (see module docstring).
        text: ``ids`` decoded.
        stop: why generation ended: ``"tag"``, ``"eos"`` or ``"length"``.
        reused: how many context tokens came from the KV cache of the previous call.
    """

    ids: list[int]
    logprobs: list[float]
    text: str
    stop: str
    reused: int = 0


@dataclass
class _SlotCache:
    """KV cache of one slot's last sequence (context + generated tokens that were fed)."""

    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [heads, len, dim]


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


class LMPolicy:
    """A causal LM plus sampling settings, acting on token-level observations.

    Args:
        model: a Hugging Face causal LM (or anything whose forward takes ``input_ids``,
            ``attention_mask``, ``position_ids``, ``past_key_values``, ``use_cache`` and
            returns ``logits`` and ``past_key_values``). A value-head wrapper is fine.
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
        self._slots: dict[Hashable, _SlotCache] = {}
        self._ends_cache: dict[int, bool] = {}

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

    @torch.no_grad()
    def generate(
        self,
        contexts: Sequence[Sequence[int]],
        prefix_lens: Sequence[int | None] | None = None,
        keys: Sequence[Hashable] | None = None,
    ) -> list[Generation]:
        """Generate one turn for each context (a batch, left-padded).

        Args:
            contexts: token ids of each row's visible context (non-empty).
            prefix_lens: per row, how many leading tokens are unchanged since the same key's
                previous call (None: no bound); reuse is also limited to the ids that actually match.
            keys: per row, the slot whose cache is read and then replaced (None: no reuse).
        """
        if not contexts:
            return []
        if any(len(c) == 0 for c in contexts):
            raise ValueError("every context must hold at least one token")
        cfg = self.sampling
        device = self.device
        n = len(contexts)
        lengths = [len(c) for c in contexts]
        width = max(lengths)
        pads = [width - L for L in lengths]

        # How many leading tokens each row can take from its slot's cache; at least one
        # context token is always fed so the prefill yields the next-token logits.
        reuse = [0] * n
        slots: list[_SlotCache | None] = [None] * n
        if cfg.reuse_prefix and keys is not None:
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is None:
                    continue
                usable = min(_common_prefix(slot.ids, contexts[i]), lengths[i] - 1)
                bound = prefix_lens[i] if prefix_lens is not None else None
                if bound is not None:
                    usable = min(usable, int(bound))
                reuse[i], slots[i] = max(usable, 0), slot
        # Cached columns are shared by the batch: the padded layout is
        # [pad_i | context_i], so the first ``cached`` columns must be pad or reusable for every row.
        # A row without a cache contributes only its padding columns (zeros in the cache).
        cached = min(pads[i] + reuse[i] for i in range(n)) if any(s is not None for s in slots) else 0

        full_mask = torch.zeros(n, width, dtype=torch.long)
        for i in range(n):
            full_mask[i, pads[i]:] = 1
        input_ids = torch.full((n, width - cached), self.pad_id, dtype=torch.long)
        for i in range(n):
            start = max(cached - pads[i], 0)
            row = contexts[i][start:]
            input_ids[i, width - cached - len(row):] = torch.tensor(row, dtype=torch.long)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)

        past = self._batch_cache(slots, pads, cached, device) if cached > 0 else None
        out = self.lm(
            input_ids=input_ids.to(device),
            attention_mask=full_mask.to(device),
            position_ids=positions[:, cached:].to(device),
            past_key_values=past,
            use_cache=True,
        )
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()
        next_pos = positions[:, -1].clone() + 1

        gen_ids: list[list[int]] = [[] for _ in range(n)]
        gen_lp: list[list[float]] = [[] for _ in range(n)]
        stops: list[str | None] = [None] * n
        for step in range(cfg.max_new_tokens):
            tokens, lps = self._sample(logits)
            for i in range(n):
                if stops[i] is not None:
                    continue
                t = int(tokens[i])
                gen_ids[i].append(t)
                gen_lp[i].append(float(lps[i]))
                if t in self.eos_ids:
                    stops[i] = "eos"
                elif self._hit_stop(gen_ids[i]):
                    stops[i] = "tag"
                elif len(gen_ids[i]) >= cfg.max_new_tokens:
                    stops[i] = "length"
            if all(s is not None for s in stops):
                break
            # Finished rows keep a column (masked out) so the batch stays rectangular.
            alive = torch.tensor([s is None for s in stops], dtype=torch.long)
            feed = torch.where(alive.bool(), tokens.cpu(), torch.full_like(tokens.cpu(), self.pad_id))
            full_mask = torch.cat([full_mask, alive[:, None]], dim=1)
            out = self.lm(
                input_ids=feed[:, None].to(device),
                attention_mask=full_mask.to(device),
                position_ids=next_pos[:, None].to(device),
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + alive

        if cfg.reuse_prefix and keys is not None:
            self._store(keys, contexts, gen_ids, past, full_mask)
        return [
            Generation(
                ids=gen_ids[i],
                logprobs=gen_lp[i],
                text=self.tokenizer.decode(gen_ids[i], skip_special_tokens=False),
                stop=stops[i] or "length",
                reused=max(cached - pads[i], 0),
            )
            for i in range(n)
        ]

    # -- internals --------------------------------------------------------------

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

    def _store(self, keys: Sequence[Hashable], contexts: Sequence[Sequence[int]], gen_ids: list[list[int]], past: Any, full_mask: torch.Tensor) -> None:
        """Keep each row's real (unmasked) cache columns for the next call of its key."""
        layers = [(layer.keys, layer.values) for layer in past.layers]
        for i, key in enumerate(keys):
            cols = full_mask[i].nonzero().squeeze(-1).to(layers[0][0].device)
            # The last sampled token was never fed, so the cache holds context + gen[:-1].
            ids = list(contexts[i]) + gen_ids[i][:-1]
            kv = [(k[i].index_select(1, cols), v[i].index_select(1, cols)) for k, v in layers]
            if kv and kv[0][0].shape[1] != len(ids):
                self._slots.pop(key, None)  # should not happen; never reuse a cache we cannot align
                continue
            self._slots[key] = _SlotCache(ids=ids, kv=kv)
