"""Policies ``mem1 eval`` drives: a batch of observations in, a batch of turns out.

* :class:`OraclePolicy`: the environment's expert, the upper bound;
* :class:`RandomFormatPolicy`: random well-formed turns, the format-only baseline;
* :class:`HFPolicy`: a Hugging Face causal LM through :class:`~mem1_agent.policy.LMPolicy`;
* :class:`OpenAICompletionsPolicy`: any model behind an OpenAI-compatible
  ``/v1/completions`` endpoint (vLLM, ``mem1 serve-policy``), standard library only.

A policy with a tokenizer talks to token-level envs (``TokenizedEnv``), so
every token count is in its own tokens; one without gets text envs and
whitespace-word counts.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from mem1_gym.protocol import ANSWER, TagSet, format_turn, get_tag_set


class Policy:
    """What ``run_eval`` drives: a batch of observations in, a batch of turns out.

    Attributes:
        name: short label for tables and plots.
        tokenizer: HF tokenizer the policy reads and writes with, or None
            (token counts then fall back to whitespace words).
    """

    name: str = "policy"
    tokenizer: Any = None
    #: Context limit of the token-level envs of a policy with a tokenizer.
    max_context_tokens: int = 32768

    def wrap_env(self, env: gym.Env) -> gym.Env:
        """The env as this policy talks to it.

        Text when the policy has no tokenizer; otherwise a ``TokenizedEnv`` in its
        tokens, so prompts carry its chat template and every token count
        (``peak_tokens``, ``dependency``) is exact in the policy's own tokens.
        """
        if self.tokenizer is None:
            return env
        from mem1_gym.wrappers import TokenizedEnv

        return TokenizedEnv(env, self.tokenizer, max_length=self.max_context_tokens)

    def settings(self) -> str:
        """What else decides its turns (sampling settings); part of a results row's key."""
        return ""

    def start_episode(self, env: gym.Env, seed: int) -> None:
        """Called after ``env`` is reset for a new episode (seeded policies reseed here)."""

    def act(self, observations: Sequence[str], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        """One turn (text or generated token ids) per observation."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the policy holds."""


class OraclePolicy(Policy):
    """The environment's expert (``env.unwrapped.oracle_action()``): the upper bound."""

    name = "oracle"

    def act(self, observations: Sequence[str], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        return [env.unwrapped.oracle_action() for env in envs]


class RandomFormatPolicy(Policy):
    """Random well-formed turns: the format-only baseline.

    Each turn has an internal state and one action the env accepts, whose
    argument is made of words drawn from the observation; answers hold one
    random word per objective. Seeded per episode, so results do not depend
    on batching.
    """

    name = "random"

    def __init__(self, words_per_field: int = 4):
        self.words_per_field = words_per_field
        self._rngs: dict[int, np.random.Generator] = {}

    def start_episode(self, env: gym.Env, seed: int) -> None:
        self._rngs[id(env)] = np.random.default_rng(seed)

    def act(self, observations: Sequence[str], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        turns: list[str | list[int]] = []
        for env in envs:
            rng = self._rngs.setdefault(id(env), np.random.default_rng(0))
            base = env.unwrapped
            # The text context, also when the env the policy sees is token-level.
            words = re.findall(r"[A-Za-z0-9]+", base.transcript.visible_text()) or ["nothing"]
            role = str(rng.choice(list(base.roles)))

            def draw(k: int) -> str:
                return " ".join(str(w) for w in rng.choice(words, size=k))

            if role == ANSWER:
                argument = "; ".join(draw(1) for _ in range(int(getattr(base, "n_objectives", 1))))
            else:
                argument = draw(self.words_per_field)
            turns.append(format_turn(draw(self.words_per_field), role, argument, base.tags))
        return turns


def close_open_action(text: str, tags: TagSet) -> str:
    """Re-append the closing action tag that a server's ``stop`` removed.

    OpenAI-compatible servers drop the stop string from the returned text;
    the env needs it to parse the action, so the last action tag opened and
    not closed is closed again.
    """
    names = "|".join(re.escape(t) for t in tags.actions.values())
    opened = list(re.finditer(rf"<({names})>", text))
    if not opened or f"</{opened[-1].group(1)}>" in text[opened[-1].end():]:
        return text
    return text + f"</{opened[-1].group(1)}>"


class OpenAICompletionsPolicy(Policy):
    """Client of an OpenAI-compatible ``/v1/completions`` endpoint (vLLM, ``mem1 serve-policy``).

    The observation (the visible context) is sent verbatim as the prompt; the
    batch goes out as one request with a list of prompts. Generation stops at
    the closing action tags of ``tags``, which are put back on the text.
    Only the standard library is used.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
        model: the served model's name.
        tags: tag set the model was trained with.
        max_tokens, temperature, top_p: sampling settings sent with every request.
        timeout: seconds per request.
        retries: further attempts after a failed request.
        tokenizer: HF tokenizer matching the served model, used to count tokens (optional).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        tags: str | TagSet = "paper",
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        timeout: float = 120.0,
        retries: int = 2,
        tokenizer: Any = None,
    ):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.tags = get_tag_set(tags)
        self.stop = self.tags.closing_tags()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.timeout = timeout
        self.retries = retries
        self.tokenizer = tokenizer
        self.name = f"openai:{model}"

    def settings(self) -> str:
        return f"temperature={self.temperature} top_p={self.top_p} max_tokens={self.max_tokens} tags={self.tags.state}"

    def complete(self, prompts: Sequence[str]) -> list[dict]:
        """POST the prompts; return the ``choices`` ordered like ``prompts``."""
        body = json.dumps(
            {
                "model": self.model,
                "prompt": list(prompts),
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "stop": self.stop,
            }
        ).encode()
        url = f"{self.base_url}/v1/completions"
        last_error = ""
        for _attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode())
                break
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:500]
                if 400 <= err.code < 500:  # the request itself is wrong: retrying cannot help
                    raise RuntimeError(f"{url} refused the request (HTTP {err.code}): {detail}") from None
                last_error = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
                last_error = str(getattr(err, "reason", err))
        else:
            raise RuntimeError(f"cannot get completions from {url} after {self.retries + 1} attempts: {last_error}")
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or len(choices) != len(prompts):
            raise RuntimeError(f"{url} answered without {len(prompts)} choices: {str(payload)[:300]}")
        return sorted(choices, key=lambda c: c.get("index", 0))

    def prompt_text(self, observation: Any, info: dict) -> str:
        """The prompt for one observation: the text context, or the token context decoded."""
        if isinstance(observation, str):
            return observation
        return self.tokenizer.decode(list(info["input_ids"]), skip_special_tokens=False)

    def act(self, observations: Sequence[Any], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        turns: list[str | list[int]] = []
        prompts = [self.prompt_text(obs, info) for obs, info in zip(observations, infos)]
        for choice in self.complete(prompts):
            text = str(choice.get("text", ""))
            # vLLM names the matched stop string; other servers only say "stop".
            matched = choice.get("stop_reason")
            if isinstance(matched, str) and matched in self.stop:
                text += matched
            elif choice.get("finish_reason") == "stop":
                text = close_open_action(text, self.tags)
            turns.append(text)
        return turns


class HFPolicy(Policy):
    """A Hugging Face causal LM, generating through :class:`~mem1_agent.policy.LMPolicy`.

    Envs are token-level (``TokenizedEnv``): the model reads the exact context
    ids and its generated ids go back verbatim; each env slot keeps its KV
    cache between turns for the prefix that did not change.

    Args:
        lm_policy: an ``LMPolicy`` (model, tokenizer, sampling settings).
        name: label in tables and plots.
        max_context_tokens: context limit of the token-level envs.
    """

    def __init__(self, lm_policy: Any, name: str = "hf", max_context_tokens: int = 32768):
        self.lm_policy = lm_policy
        self.tokenizer = lm_policy.tokenizer
        self.name = name
        self.max_context_tokens = max_context_tokens

    @classmethod
    def load(
        cls,
        model: str,
        tags: str | TagSet = "paper",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        device: str = "auto",
        seed: int = 0,
        max_context_tokens: int = 32768,
    ) -> HFPolicy:
        """Load ``default``, ``tiny`` or an HF path/id; ``temperature`` 0 is greedy, ``device`` auto picks cuda."""
        import torch

        from .models import load_policy
        from .policy import LMPolicy, SamplingConfig
        from .serve_policy import resolve_device

        try:
            lm, tokenizer = load_policy(model, value_head=False, seed=seed)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load model {model!r}: {err}") from None
        lm.to(resolve_device(device)).eval()
        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        generator = torch.Generator(device=next(lm.parameters()).device).manual_seed(seed)
        lm_policy = LMPolicy(lm, tokenizer, tags=tags, sampling=sampling, generator=generator)
        return cls(lm_policy, name=f"hf:{model}", max_context_tokens=max_context_tokens)

    def settings(self) -> str:
        sampling = self.lm_policy.sampling
        return (f"temperature={sampling.temperature} top_p={sampling.top_p} top_k={sampling.top_k} "
                f"max_new_tokens={sampling.max_new_tokens}")

    def start_episode(self, env: gym.Env, seed: int) -> None:
        # A new episode shares nothing worth trusting with the slot's previous one.
        self.lm_policy.reset_cache(id(env))

    def act(self, observations: Sequence[Any], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        generations = self.lm_policy.act(observations, infos, keys=[id(env) for env in envs])
        return [g.ids for g in generations]

    def close(self) -> None:
        self.lm_policy.reset_cache()


def load_tokenizer(name: str) -> Any:
    """An HF tokenizer by path or id, with a clear error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load tokenizer {name!r}: {err}") from None


def token_unit(policy: Policy) -> str:
    """How token counts of this policy's cells are measured."""
    if policy.tokenizer is None:
        return "whitespace"
    # The folder name is enough to tell tokenizers apart in a table.
    name = str(getattr(policy.tokenizer, "name_or_path", "") or "").rstrip("/")
    return Path(name).name if name else type(policy.tokenizer).__name__
