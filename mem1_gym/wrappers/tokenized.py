"""Token-in / token-out view of any MEM1 text environment.

:class:`TokenizedEnv` wraps a :class:`~mem1_gym.turn_env.TurnEnv` (QA, web
search, WebShop adapter, ...) and speaks token ids instead of text:

* each segment of the transcript is tokenized **once** per episode: the prompt
  through the tokenizer's chat template when it has one (the prompt is the
  user message, ``add_generation_prompt=True``; every later segment continues
  the assistant message), the ``<info>`` observations plainly;
* an action given as token ids becomes its segment **verbatim** (the env sees
  the decoded text, but the context keeps the policy's own ids, never a
  decode-then-encode round trip); an action given as text is tokenized with
  ``add_special_tokens=False``;
* the observation is the visible context as ids, padded to ``max_length``;
* ``info["prefix_len"]`` counts the leading tokens shared with the previous
  observation, so a policy can keep its KV cache for them.

The env's visibility (``info["visible_ids"]``, decided by its memory policy)
is the single source of truth: the wrapper maps segment ids to token ids.
It installs an exact counter on ``env.unwrapped.token_counter`` so that the
memory policy (``truncate:n``) and the metrics (``context_tokens``,
``peak_tokens``, ``dependency``) are counted in these very tokens.

Added ``info`` keys (on top of the text env's):

* ``segment_ids``: ``{segment id: token ids}`` for the segments this call added
  (so a rollout can record every segment's ids exactly once);
* ``visible_ids``: the env's visible segment ids (unchanged);
* ``input_ids``: the unpadded context ids; ``spans``: ``(segment id, start, end)``
  of each visible segment in ``input_ids``;
* ``prefix_len``: see above; 0 after ``reset()``;
* ``truncation_reason``: set when the context outgrew ``max_length``.

Actions are bounded **before** they are tokenized or converted, so no action
costs more than a bounded amount of time or memory: an id action longer than
``max_action_tokens``, or a text action longer than the env's
``max_action_chars`` characters or ``max_action_bytes`` UTF-8 bytes (or whose
tokens exceed ``max_action_tokens``, or that is not encodable, e.g. a lone
surrogate), is an invalid turn with a message saying why, as the text envs
do. Its action segment keeps the leading part within the bounds (ids verbatim).

When the context exceeds ``max_length`` the episode is truncated
(``truncated=True``, with ``truncation_reason``) rather than cut mid-segment.
The observation then holds the leading whole segments that fit; the full
context stays in ``info["input_ids"]``. Use ``memory="truncate:n"`` with
``n <= max_length`` to keep episodes within budget instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..turn_env import RefusedAction, TurnEnv

#: Default UTF-8 bytes a text action may have, per token of ``max_action_tokens``: four times
#: what English text takes (about 4 bytes a token), so only runaway or hostile text is refused.
BYTES_PER_ACTION_TOKEN = 16


def load_tokenizer(tokenizer: Any) -> Any:
    """Return ``tokenizer`` itself, or load one by Hugging Face id / path when given a string.

    transformers is imported only here, and only for strings.
    """
    if not isinstance(tokenizer, str):
        return tokenizer
    from transformers import AutoTokenizer  # lazy: mem1_gym works without transformers

    return AutoTokenizer.from_pretrained(tokenizer)


def as_id_list(action: Any) -> list[int] | None:
    """Token ids from a list / tuple / numpy array / tensor of integers, or None if ``action`` is not one."""
    if isinstance(action, (str, bytes)):
        return None
    if hasattr(action, "tolist") and not isinstance(action, (list, tuple)):
        action = action.tolist()
        if isinstance(action, int):
            action = [action]
    if not isinstance(action, (list, tuple)):
        return None
    ids: list[int] = []
    for x in action:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            return None
        ids.append(int(x))
    return ids


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n])
    y = np.asarray(b[:n])
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


class SegmentTokenizer:
    """Tokenizes the segments of a transcript the way :class:`TokenizedEnv` lays them out.

    Args:
        tokenizer: a Hugging Face tokenizer (or anything with the same call,
            ``decode`` and ``apply_chat_template`` methods).
        chat_template: apply the tokenizer's chat template to the prompt;
            ``None`` (default) does so when the tokenizer has one.
        system_prompt: optional system message placed before the prompt
            (only with a chat template).
    """

    def __init__(self, tokenizer: Any, chat_template: bool | None = None, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise ValueError("chat_template=True but the tokenizer has no chat template")
        self.chat_template = has_template if chat_template is None else bool(chat_template)
        self.system_prompt = system_prompt
        self.vocab_size = len(tokenizer)
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos_token_id: int | None = int(eos) if isinstance(eos, (int, np.integer)) else None
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if isinstance(pad, (int, np.integer)) else (self.eos_token_id or 0)

    def prompt(self, text: str) -> list[int]:
        """The prompt segment: chat-templated user message opening the assistant turn, or plain text with BOS."""
        if not self.chat_template:
            return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        messages = [{"role": "user", "content": text}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # older transformers return a BatchEncoding
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def text(self, text: str) -> list[int]:
        """An action or observation segment: plain ids, no special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def action_text(self, ids: Sequence[int]) -> str:
        """The text the env sees for generated ``ids`` (a trailing EOS is kept in the ids, not in the text)."""
        body = list(ids)
        if body and self.eos_token_id is not None and body[-1] == self.eos_token_id:
            body = body[:-1]
        return self.tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def check_ids(self, ids: Sequence[int]) -> None:
        """Raise a clear ``ValueError`` for ids outside the vocabulary."""
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of the vocabulary [0, {self.vocab_size}): {bad[:5]}")


class ExactTokenCounter:
    """The ``token_counter`` a :class:`TokenizedEnv` installs on its env.

    The env calls it with each segment's text as it appends the segment; it
    answers with the length of the ids the wrapper will use for that segment:
    chat-templated ids while the env resets (the prompt), the policy's own ids
    for the staged action text, plain ids otherwise. Results are cached by
    text for the current call so the wrapper reuses them.
    """

    def __init__(self, segments: SegmentTokenizer):
        self.segments = segments
        self.resetting = False
        self.staged_text: str | None = None
        self.staged_ids: list[int] = []
        self.staged_counted = False
        self.prompt_cache: dict[str, list[int]] = {}
        self.text_cache: dict[str, list[int]] = {}

    def begin(self, resetting: bool, staged_text: str | None = None, staged_ids: Sequence[int] = ()) -> None:
        """Start an env call: a reset, or a step whose action is ``staged_text`` with ids ``staged_ids``."""
        self.resetting = resetting
        self.staged_text = staged_text
        self.staged_ids = list(staged_ids)
        self.staged_counted = False
        self.prompt_cache.clear()
        self.text_cache.clear()

    def ids_for(self, kind: str, text: str) -> list[int]:
        """The ids of a segment of ``kind`` with ``text`` (cached for this call)."""
        if kind == "prompt":
            if text not in self.prompt_cache:
                self.prompt_cache[text] = self.segments.prompt(text)
            return self.prompt_cache[text]
        if kind == "action" and text == self.staged_text:
            return self.staged_ids
        if text not in self.text_cache:
            self.text_cache[text] = self.segments.text(text)
        return self.text_cache[text]

    def __call__(self, text: str) -> int:
        # The env counts segments in the order it appends them: during a reset the prompt comes
        # first, during a step the action does; anything after them (the observation, a memory
        # policy's inserted segments) is plain text, even when its text repeats the prompt's or action's.
        if self.resetting:
            self.resetting = False
            return len(self.ids_for("prompt", text))
        if self.staged_text is not None and text == self.staged_text and not self.staged_counted:
            self.staged_counted = True
            return len(self.staged_ids)
        return len(self.ids_for("observation", text))


@dataclass
class _Context:
    """The visible context as ids, with each segment's span."""

    ids: list[int]
    spans: list[tuple[int, int, int]]


class TokenizedEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Token-in / token-out wrapper of a MEM1 text environment (see the module docstring).

    Args:
        env: a text env whose ``unwrapped`` is a :class:`~mem1_gym.turn_env.TurnEnv`.
        tokenizer: a Hugging Face tokenizer, or its id / path.
        max_length: observation length; longer contexts truncate the episode.
        chat_template: apply the chat template to the prompt (default: if the tokenizer has one).
        system_prompt: optional system message (chat template only).
        max_action_tokens: longer actions are refused (default: ``max_length``, as a longer one
            cannot fit in the context anyway).
        max_action_bytes: text actions with more UTF-8 bytes are refused before tokenizing
            (default: :data:`BYTES_PER_ACTION_TOKEN` per ``max_action_tokens``).

    Observation: ``{"input_ids": int64[max_length], "attention_mask": int64[max_length]}``,
    right-padded with the pad token. Action: token ids (any integer sequence)
    or text.
    """

    def __init__(
        self,
        env: gym.Env,
        tokenizer: Any,
        max_length: int = 2048,
        chat_template: bool | None = None,
        system_prompt: str | None = None,
        max_action_tokens: int | None = None,
        max_action_bytes: int | None = None,
    ):
        # Recorded so env.spec can rebuild the wrapper stack (gymnasium's checker does).
        gym.utils.RecordConstructorArgs.__init__(
            self,
            tokenizer=tokenizer,
            max_length=max_length,
            chat_template=chat_template,
            system_prompt=system_prompt,
            max_action_tokens=max_action_tokens,
            max_action_bytes=max_action_bytes,
        )
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.unwrapped, TurnEnv):
            raise TypeError(
                f"TokenizedEnv wraps MEM1 text envs (TurnEnv subclasses), got {type(env.unwrapped).__name__}"
            )
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        self.tokenizer = load_tokenizer(tokenizer)
        self.segmenter = SegmentTokenizer(self.tokenizer, chat_template, system_prompt)
        self.max_length = int(max_length)
        self.max_action_tokens = int(max_action_tokens) if max_action_tokens is not None else self.max_length
        self.max_action_bytes = (
            int(max_action_bytes) if max_action_bytes is not None else BYTES_PER_ACTION_TOKEN * self.max_action_tokens
        )
        if self.max_action_tokens < 1 or self.max_action_bytes < 1:
            raise ValueError("max_action_tokens and max_action_bytes must be at least 1")
        self.vocab_size = self.segmenter.vocab_size
        self.pad_token_id = self.segmenter.pad_token_id
        self.observation_space = token_observation_space(self.vocab_size, self.max_length)
        self.action_space = spaces.Sequence(spaces.Discrete(self.vocab_size), stack=True)
        self.counter = ExactTokenCounter(self.segmenter)
        env.unwrapped.token_counter = self.counter
        #: Token ids of every segment of the current episode, by segment id.
        self.segment_token_ids: dict[int, list[int]] = {}
        self.context_ids: list[int] = []
        self._over = True
        self._last_obs: dict[str, np.ndarray] | None = None

    # -- Gymnasium API --------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the text env and tokenize its prompt.

        Raises ``ValueError`` if the prompt alone exceeds ``max_length``.
        """
        self.segment_token_ids = {}
        self.context_ids = []
        self.counter.begin(resetting=True)
        try:
            _, info = self.env.reset(seed=seed, options=options)
        finally:
            self.counter.begin(resetting=False)
        info = self._token_info(info, previous=[])
        if len(self.context_ids) > self.max_length:
            raise ValueError(
                f"the prompt is {len(self.context_ids)} tokens long, more than max_length={self.max_length}; "
                "raise max_length"
            )
        self._over = False
        obs = self._observation(info)
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Take one turn given as token ids (kept verbatim) or text."""
        if self._over:
            info = {
                "error": "the episode has ended; call reset() to start a new one",
                "prefix_len": len(self.context_ids),
                "metrics": self.env.unwrapped.metrics(),
            }
            assert self._last_obs is not None, "call reset() before step()"
            return self._last_obs, 0.0, True, False, info
        text, ids = self._bounded_action(action)
        previous = self.context_ids
        self.counter.begin(resetting=False, staged_text=text, staged_ids=ids)
        _, reward, terminated, truncated, info = self.env.step(text)
        info = self._token_info(info, previous=previous)
        if len(self.context_ids) > self.max_length:
            truncated = True
            info["truncation_reason"] = (
                f"the context grew to {len(self.context_ids)} tokens, over max_length={self.max_length} "
                f"(memory policy {self.env.unwrapped.memory.spec()!r}); use memory='truncate:n' with "
                f"n <= {self.max_length} or raise max_length"
            )
            # The inner env does not know the episode ended here; report its metrics as any ending does.
            info.setdefault("metrics", self.env.unwrapped.metrics())
        self._over = bool(terminated or truncated)
        return self._observation(info), float(reward), bool(terminated), bool(truncated), info

    # -- helpers --------------------------------------------------------------

    def _bounded_action(self, action: Any) -> tuple[str, list[int]]:
        """The action's text and ids; an action over a bound comes back as a :class:`RefusedAction`.

        Every bound is checked before the costly part (converting ids, tokenizing),
        so a 10 MB action costs what its bounded prefix does.
        """
        if isinstance(action, str):
            return self._bounded_text(action)
        if isinstance(action, bytes):
            raise TypeError("the action must be token ids or text, got bytes")
        try:
            n = len(action)
        except TypeError:
            n = 0  # a scalar (0-d array): one id at most
        if n > self.max_action_tokens:
            action = action[: self.max_action_tokens]
        ids = as_id_list(action)
        if ids is None:
            raise TypeError(f"the action must be token ids or text, got {type(action).__name__}")
        self.segmenter.check_ids(ids)
        text = self.segmenter.action_text(ids)
        if n > self.max_action_tokens:
            return RefusedAction(text, f"the turn is {n} tokens long; the limit is {self.max_action_tokens}"), ids
        return text, ids

    def _bounded_text(self, text: str) -> tuple[str, list[int]]:
        """Bound a text action by characters, encodability and bytes, then tokenize what is left."""
        reason = None
        max_chars = self.env.unwrapped.max_action_chars
        if len(text) > max_chars:
            reason = f"the turn is {len(text)} characters long; the limit is {max_chars}"
            text = text[:max_chars]
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as err:
            reason = reason or (
                f"the turn is not valid Unicode text (an unpaired surrogate {text[err.start]!r} at character {err.start})"
            )
            data = text.encode("utf-8", errors="replace")  # '?' in place of each surrogate
            text = data.decode("utf-8")
        if len(data) > self.max_action_bytes:
            reason = reason or f"the turn is {len(data)} bytes long in UTF-8; the limit is {self.max_action_bytes}"
            text = data[: self.max_action_bytes].decode("utf-8", errors="ignore")
        ids = self.segmenter.text(text)
        if len(ids) > self.max_action_tokens:
            reason = reason or f"the turn is {len(ids)} tokens long; the limit is {self.max_action_tokens}"
            ids = ids[: self.max_action_tokens]
            text = self.segmenter.action_text(ids)
        return (RefusedAction(text, reason) if reason else text), ids

    def spans(self) -> list[tuple[int, int, int]]:
        """``(segment id, start, end)`` of each visible segment in the current context."""
        return self._layout(self.env.unwrapped.transcript.visible_ids).spans

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text (special tokens kept)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _layout(self, visible: Sequence[int]) -> _Context:
        ids: list[int] = []
        spans: list[tuple[int, int, int]] = []
        for sid in visible:
            seg = self.segment_token_ids[sid]
            spans.append((sid, len(ids), len(ids) + len(seg)))
            ids.extend(seg)
        return _Context(ids, spans)

    def _token_info(self, info: dict[str, Any], previous: list[int]) -> dict[str, Any]:
        """Record the new segments' ids and add the token keys to ``info``."""
        new: dict[int, list[int]] = {}
        for seg in info.get("new_segments", []):
            ids = list(self.counter.ids_for(seg["kind"], seg["text"]))
            if len(ids) != seg["tokens"]:
                # The env counted this segment with another counter: visibility
                # and metrics would no longer be in our tokens.
                raise RuntimeError(
                    f"segment {seg['id']} ({seg['kind']}) was counted as {seg['tokens']} tokens "
                    f"but has {len(ids)} ids; "
                    "was env.unwrapped.token_counter replaced?"
                )
            new[seg["id"]] = ids
            self.segment_token_ids[seg["id"]] = ids
        context = self._layout(info["visible_ids"])
        self.context_ids = context.ids
        info = dict(info)
        info["segment_ids"] = new
        info["input_ids"] = list(context.ids)
        info["spans"] = context.spans
        info["prefix_len"] = common_prefix_len(previous, context.ids)
        return info

    def _observation(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        ids = self.context_ids
        if len(ids) > self.max_length:
            # Never cut mid-segment: keep the leading whole segments that fit.
            fit = max((end for _, _, end in info["spans"] if end <= self.max_length), default=0)
            ids = ids[:fit]
        self._last_obs = pad_ids(ids, self.max_length, self.pad_token_id)
        return self._last_obs


def token_observation_space(vocab_size: int, max_length: int) -> spaces.Dict:
    """The ``Dict`` of padded ``input_ids`` and ``attention_mask`` used by the token-level envs."""
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, vocab_size - 1, shape=(max_length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(max_length,), dtype=np.int64),
        }
    )


def pad_ids(ids: Sequence[int], max_length: int, pad_token_id: int) -> dict[str, np.ndarray]:
    """Right-pad ``ids`` to ``max_length`` (they must fit) into the token observation dict."""
    n = len(ids)
    if n > max_length:
        raise ValueError(f"{n} ids do not fit in max_length={max_length}")
    input_ids = np.full(max_length, pad_token_id, dtype=np.int64)
    input_ids[:n] = ids
    mask = np.zeros(max_length, dtype=np.int64)
    mask[:n] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
