"""Evaluation that reproduces the paper's metrics: ``mem1 eval``.

A grid of cells, env x memory policy x number of objectives x seed, each run
for a number of episodes by one policy. Episodes of all pending cells share
one batch of environments stepped together, so a batched policy (an HF model,
an OpenAI-compatible server) generates for several episodes at once.

Per cell, as the paper defines them (token counts in the policy's own
tokenizer when it has one, whitespace words otherwise, named in ``token_unit``):

* ``em``: exact matches summed over the objectives, averaged over episodes
  (0..N); ``f1`` likewise; ``reward`` the env's task reward (WebShop score);
* ``peak_tokens``: the largest context held while generating;
* ``dependency``: attention pairs over every generated token;
* ``inference_s``: wall-clock time spent in the policy per episode (a batched
  call's time is shared equally by the episodes in the batch);
* ``turns`` and ``invalid_rate`` (invalid turns / turns).

Results are appended to ``results.csv`` one cell at a time, so a crashed run
continues where it stopped (finished cells are recognised by their key
columns). :func:`write_report` adds a Markdown table and PNG plots with the
paper's reference figures drawn alongside.

Function API::

    rows = run_eval(EvalConfig(policy="oracle", memories=["full", "mem1"]))
    write_report(rows, "runs/eval")
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import gymnasium as gym
import numpy as np

import mem1_gym  # noqa: F401  (registers the environments)
from mem1_gym.protocol import ANSWER, TagSet, format_turn, get_tag_set

QA_ENV = "mem1_gym/MultiObjectiveQA-v0"

# -- configuration -------------------------------------------------------------


@dataclass
class EvalConfig:
    """What to evaluate and where to write it.

    Attributes:
        policy: ``oracle``, ``random``, ``default`` (the default HF model),
            ``hf:PATH_OR_NAME`` or ``openai:BASE_URL#MODEL``.
        envs: Gymnasium env ids.
        memories: memory policy specs (``full``, ``mem1``, ``window:k``, ``truncate:n``).
        objectives: numbers of objectives N (envs without ``n_objectives`` run once, as N=1).
        seeds: one cell per seed; episode ``e`` of seed ``s`` resets with ``s * 1_000_003 + e``.
        episodes: episodes per cell.
        tags: tag set of the turn grammar, ``paper`` or ``checkpoint``.
        batch_size: episodes stepped together.
        out_dir: where ``results.csv``, ``results.md`` and the plots go.
        env_kwargs: extra keyword arguments for every env (e.g. ``dataset``, ``max_turns``).
        tokenizer: HF tokenizer path/name of the model behind an ``openai:`` policy: the envs then
            speak its tokens (chat template on the prompt, exact counts); whitespace words otherwise.
        max_context_tokens: longest context of a token-level env (longer episodes are truncated).
        device: where an HF policy runs (``auto`` = cuda when available).
        model_seed: seeds an HF policy's sampling.
        max_new_tokens: longest generated turn (model policies).
        temperature: sampling temperature (0 = greedy) for model policies.
        top_p: nucleus sampling for model policies.
        timeout_s: per-request timeout of the OpenAI client.
        retries: retries of a failed request before the run stops.
        progress: show a progress bar.
    """

    policy: str = "oracle"
    envs: list[str] = field(default_factory=lambda: [QA_ENV])
    memories: list[str] = field(default_factory=lambda: ["full", "mem1", "window:1"])
    objectives: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    episodes: int = 8
    tags: str = "paper"
    batch_size: int = 8
    out_dir: str = "runs/eval"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    max_context_tokens: int = 32768
    device: str = "auto"
    model_seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    timeout_s: float = 120.0
    retries: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if any(n < 1 for n in self.objectives):
            raise ValueError(f"objectives must be positive, got {self.objectives}")
        if not (self.envs and self.memories and self.objectives and self.seeds):
            raise ValueError("envs, memories, objectives and seeds must each name at least one value")
        get_tag_set(self.tags)


# -- policies ------------------------------------------------------------------


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
        for obs, env in zip(observations, envs):
            rng = self._rngs.setdefault(id(env), np.random.default_rng(0))
            base = env.unwrapped
            words = re.findall(r"[A-Za-z0-9]+", obs) or ["nothing"]
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
    def load(cls, model: str, config: EvalConfig) -> HFPolicy:
        """Load ``default``, ``tiny`` or an HF path/id with the sampling settings of ``config``."""
        import torch

        from .models import load_policy
        from .policy import LMPolicy, SamplingConfig
        from .serve_policy import resolve_device

        try:
            lm, tokenizer = load_policy(model, value_head=False, seed=config.model_seed)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load model {model!r}: {err}") from None
        lm.to(resolve_device(config.device)).eval()
        sampling = SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  top_p=config.top_p)
        generator = torch.Generator(device=next(lm.parameters()).device).manual_seed(config.model_seed)
        lm_policy = LMPolicy(lm, tokenizer, tags=config.tags, sampling=sampling, generator=generator)
        return cls(lm_policy, name=f"hf:{model}", max_context_tokens=config.max_context_tokens)

    def start_episode(self, env: gym.Env, seed: int) -> None:
        # A new episode shares nothing worth trusting with the slot's previous one.
        self.lm_policy.reset_cache(id(env))

    def act(self, observations: Sequence[Any], infos: Sequence[dict], envs: Sequence[gym.Env]) -> list[str | list[int]]:
        generations = self.lm_policy.act(observations, infos, keys=[id(env) for env in envs])
        return [g.ids for g in generations]

    def close(self) -> None:
        self.lm_policy.reset_cache()


def make_policy(config: EvalConfig) -> Policy:
    """Build the policy named by ``config.policy``."""
    spec = config.policy
    tokenizer = _load_tokenizer(config.tokenizer) if config.tokenizer else None
    if spec == "oracle":
        policy: Policy = OraclePolicy()
    elif spec == "random":
        policy = RandomFormatPolicy()
    elif spec.startswith("openai:"):
        url, sep, model = spec[len("openai:"):].rpartition("#")
        if not sep or not url or not model:
            raise ValueError(f"policy {spec!r}: write openai:BASE_URL#MODEL, e.g. openai:http://127.0.0.1:8000#mem1")
        policy = OpenAICompletionsPolicy(
            url, model, config.tags, config.max_new_tokens, config.temperature, config.top_p,
            config.timeout_s, config.retries,
        )
    elif spec == "default" or spec.startswith("hf:"):
        policy = HFPolicy.load(spec.removeprefix("hf:"), config)
    else:
        raise ValueError(f"unknown policy {spec!r}; use oracle, random, default, hf:PATH or openai:URL#MODEL")
    if tokenizer is not None:
        policy.tokenizer = tokenizer
    policy.max_context_tokens = config.max_context_tokens
    return policy


def _load_tokenizer(name: str) -> Any:
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


# -- the grid --------------------------------------------------------------------

#: Columns identifying a cell; a row with the same values is a finished cell.
KEY_COLUMNS = ("policy", "env", "memory", "objectives", "seed", "episodes", "tags", "env_kwargs")
METRIC_COLUMNS = (
    "em", "em_std", "f1", "reward", "peak_tokens", "dependency", "inference_s",
    "turns", "invalid_rate", "token_unit", "finished_at",
)
COLUMNS = KEY_COLUMNS + METRIC_COLUMNS
RESULTS_CSV = "results.csv"


@dataclass(frozen=True)
class Cell:
    """One grid point: ``episodes`` episodes of ``env`` under ``memory`` with N objectives."""

    env: str
    memory: str
    objectives: int
    seed: int
    has_objectives: bool

    def env_kwargs(self, config: EvalConfig) -> dict[str, Any]:
        """Keyword arguments for ``gym.make``."""
        kwargs = {**config.env_kwargs, "memory": self.memory, "tags": config.tags}
        if self.has_objectives:
            kwargs["n_objectives"] = self.objectives
        return kwargs

    def key(self, config: EvalConfig, policy_name: str) -> tuple[str, ...]:
        """Values of :data:`KEY_COLUMNS`, as written to the CSV."""
        kwargs = json.dumps(config.env_kwargs, sort_keys=True)
        return (policy_name, self.env, self.memory, str(self.objectives), str(self.seed),
                str(config.episodes), config.tags, kwargs)


def _accepts_objectives(env_id: str) -> bool:
    """Whether the env's constructor takes ``n_objectives``."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(f"unknown env {env_id!r}: {err}") from None
    entry = spec.entry_point
    target = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return "n_objectives" in params or (spec.kwargs or {}).get("n_objectives") is not None


def grid(config: EvalConfig) -> list[Cell]:
    """The cells of the grid, in run order (env, memory, N, seed)."""
    cells = []
    for env_id in config.envs:
        has_n = _accepts_objectives(env_id)
        for memory in config.memories:
            for n in (config.objectives if has_n else [1]):
                for seed in config.seeds:
                    cells.append(Cell(env_id, memory, n, seed, has_n))
    return cells


def episode_seed(cell_seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of a cell with seed ``cell_seed``."""
    return cell_seed * 1_000_003 + episode


@dataclass
class _Slot:
    """One env of the batch and the episode it is running."""

    env: gym.Env | None = None
    env_key: str = ""
    cell: Cell | None = None
    obs: Any = None
    info: dict = field(default_factory=dict)
    episode_return: float = 0.0
    inference_s: float = 0.0


def run_eval(config: EvalConfig, policy: Policy | None = None) -> list[dict]:
    """Run every unfinished cell of the grid; return all rows of ``results.csv`` for this grid.

    Finished cells (found in the CSV by :data:`KEY_COLUMNS`) are skipped, so
    rerunning after a crash continues the evaluation. ``policy`` overrides
    ``config.policy`` (e.g. a policy object built in a notebook).
    """
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / RESULTS_CSV
    own_policy = policy is None
    policy = policy or make_policy(config)
    try:
        done = {tuple(row[c] for c in KEY_COLUMNS): row for row in read_results(csv_path)}
        cells = grid(config)
        pending = [c for c in cells if c.key(config, policy.name) not in done]
        unit = token_unit(policy)
        bar = _progress(len(pending) * config.episodes, config.progress)

        def finish(cell: Cell, episodes: list[dict]) -> None:
            row = _cell_row(cell, config, policy.name, unit, episodes)
            append_result(csv_path, row)
            done[cell.key(config, policy.name)] = _as_strings(row)

        _run_cells(pending, config, policy, finish, bar)
        bar.close()
        return [_typed(done[c.key(config, policy.name)]) for c in cells]
    finally:
        if own_policy:
            policy.close()


def _run_cells(
    cells: list[Cell],
    config: EvalConfig,
    policy: Policy,
    finish: Callable[[Cell, list[dict]], None],
    bar: Any,
) -> None:
    """Run all episodes of ``cells`` on a batch of ``config.batch_size`` envs."""
    jobs = deque((cell, e) for cell in cells for e in range(config.episodes))
    results: dict[Cell, list[dict]] = {cell: [] for cell in cells}
    slots = [_Slot() for _ in range(min(config.batch_size, len(jobs)))]
    try:
        while True:
            for slot in slots:
                if slot.cell is None and jobs:
                    _start(slot, *jobs.popleft(), config, policy)
            active = [s for s in slots if s.cell is not None]
            if not active:
                return
            start = time.perf_counter()
            actions = policy.act([s.obs for s in active], [s.info for s in active], [s.env for s in active])
            share = (time.perf_counter() - start) / len(active)
            if len(actions) != len(active):
                raise RuntimeError(f"policy {policy.name} returned {len(actions)} turns for {len(active)} observations")
            for slot, action in zip(active, actions):
                assert slot.env is not None and slot.cell is not None
                slot.obs, reward, terminated, truncated, slot.info = slot.env.step(action)
                slot.episode_return += float(reward)
                slot.inference_s += share
                if terminated or truncated:
                    cell = slot.cell
                    results[cell].append(_episode_metrics(slot))
                    slot.cell = None
                    bar.update(1)
                    if len(results[cell]) == config.episodes:
                        finish(cell, results.pop(cell))
    finally:
        for slot in slots:
            if slot.env is not None:
                slot.env.close()


def _start(slot: _Slot, cell: Cell, episode: int, config: EvalConfig, policy: Policy) -> None:
    """Reset ``slot`` for episode ``episode`` of ``cell``, reusing its env when the settings match."""
    kwargs = cell.env_kwargs(config)
    env_key = json.dumps([cell.env, kwargs], sort_keys=True, default=str)
    if slot.env is None or slot.env_key != env_key:
        if slot.env is not None:
            slot.env.close()
        slot.env = policy.wrap_env(gym.make(cell.env, **kwargs))
        slot.env_key = env_key
    seed = episode_seed(cell.seed, episode)
    slot.obs, slot.info = slot.env.reset(seed=seed)
    slot.cell = cell
    slot.episode_return = 0.0
    slot.inference_s = 0.0
    policy.start_episode(slot.env, seed)


def _episode_metrics(slot: _Slot) -> dict:
    """The metrics of the episode ``slot`` just finished."""
    metrics = dict(slot.info.get("metrics") or {})
    if not metrics:
        raise RuntimeError(f"{slot.cell.env if slot.cell else 'env'} ended an episode without info['metrics']")
    metrics.setdefault("reward", slot.episode_return)
    metrics["inference_s"] = slot.inference_s
    return metrics


def _mean(episodes: list[dict], key: str) -> float:
    values = [float(e[key]) for e in episodes if e.get(key) is not None]
    return float(np.mean(values)) if values else math.nan


def _cell_row(cell: Cell, config: EvalConfig, policy_name: str, unit: str, episodes: list[dict]) -> dict:
    """Aggregate one cell's episodes into a CSV row."""
    key = dict(zip(KEY_COLUMNS, cell.key(config, policy_name)))
    turns = sum(float(e["turns"]) for e in episodes)
    invalid = sum(float(e.get("invalid_turns", 0)) for e in episodes)
    ems = [float(e["em"]) for e in episodes if e.get("em") is not None]
    return {
        **key,
        "em": _mean(episodes, "em"),
        "em_std": float(np.std(ems)) if ems else math.nan,
        "f1": _mean(episodes, "f1"),
        "reward": _mean(episodes, "reward"),
        "peak_tokens": _mean(episodes, "peak_tokens"),
        "dependency": _mean(episodes, "dependency"),
        "inference_s": _mean(episodes, "inference_s"),
        "turns": turns / len(episodes),
        "invalid_rate": invalid / turns if turns else 0.0,
        "token_unit": unit,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# -- results file ----------------------------------------------------------------


def _as_strings(row: dict) -> dict[str, str]:
    return {k: ("" if isinstance(v, float) and math.isnan(v) else str(v)) for k, v in row.items()}


def _typed(row: dict[str, str]) -> dict:
    """A CSV row with numbers as numbers (empty metrics become NaN)."""
    out: dict[str, Any] = dict(row)
    for col in ("objectives", "seed", "episodes"):
        out[col] = int(row[col])
    for col in METRIC_COLUMNS:
        if col in ("token_unit", "finished_at"):
            continue
        out[col] = float(row[col]) if row[col] != "" else math.nan
    return out


def append_result(path: str | Path, row: dict) -> None:
    """Append one cell's row to the CSV (header first if new), flushed to disk."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        if new:
            writer.writeheader()
        writer.writerow(_as_strings(row))
        fh.flush()
        os.fsync(fh.fileno())


def read_results(path: str | Path) -> list[dict[str, str]]:
    """Rows of a results CSV as strings; a missing file has none.

    Raises:
        ValueError: naming the file and row when the file is not a results CSV
            of this version or a row is damaged.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return []
        if tuple(reader.fieldnames) != COLUMNS:
            raise ValueError(
                f"{path}: header {reader.fieldnames} is not the results header {list(COLUMNS)}; "
                "use another out dir or move the file away"
            )
        for line, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in COLUMNS):
                raise ValueError(f"{path}, line {line}: the row has the wrong number of fields (a cut-off write?)")
            try:
                _typed(row)
            except ValueError as err:
                raise ValueError(f"{path}, line {line}: {err}") from None
            rows.append(row)
    return rows


# -- report --------------------------------------------------------------------

#: The paper's figures (arXiv 2506.15841), drawn alongside our curves:
#: env id fragment -> (label, N, score, peak tokens or None).
PAPER_REFERENCES: dict[str, list[tuple[str, int, float, float | None]]] = {
    "MultiObjectiveQA": [
        ("MEM1-7B (paper)", 16, 1.97, 1040.0),
        ("Qwen2.5-14B-Instruct (paper)", 16, 0.567, 3840.0),
    ],
    "WebShop": [("MEM1 WebShop (paper)", 1, 70.87, None)],
}


def _references(env_id: str) -> list[tuple[str, int, float, float | None]]:
    return [ref for frag, refs in PAPER_REFERENCES.items() if frag in env_id for ref in refs]


def _score_name(env_id: str) -> tuple[str, str, float]:
    """(column, axis label, scale) of an env's headline score."""
    if "WebShop" in env_id:
        return "reward", "WebShop score (reward x 100)", 100.0
    return "em", "EM (sum over objectives)", 1.0


def aggregate(rows: Iterable[dict]) -> list[dict]:
    """Pool the seeds of each (policy, env, memory, N): episode-weighted means, pooled EM std."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["policy"], row["env"], row["memory"], int(row["objectives"])), []).append(row)
    out = []
    for (policy, env, memory, n), members in groups.items():
        weights = np.array([float(r["episodes"]) for r in members])
        total = float(weights.sum())

        def pooled(col: str) -> float:
            values = np.array([float(r[col]) for r in members])
            return float((values * weights).sum() / total) if not np.isnan(values).all() else math.nan

        em = pooled("em")
        second = sum(w * (float(r["em_std"]) ** 2 + float(r["em"]) ** 2) for w, r in zip(weights, members))
        em_std = math.sqrt(max(second / total - em**2, 0.0)) if not math.isnan(em) else math.nan
        agg = {"policy": policy, "env": env, "memory": memory, "objectives": n, "episodes": int(total),
               "seeds": len(members), "em_std": em_std, "token_unit": members[0]["token_unit"]}
        for col in ("em", "f1", "reward", "peak_tokens", "dependency", "inference_s", "turns", "invalid_rate"):
            agg[col] = pooled(col)
        out.append(agg)
    return out


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def markdown_table(rows: Iterable[dict]) -> str:
    """The results as a Markdown table (seeds pooled) plus the paper's reference figures."""
    agg = sorted(aggregate(rows), key=lambda r: (r["policy"], r["env"], r["memory"], r["objectives"]))
    lines = [
        "| policy | env | memory | N | EM | F1 | reward | peak tokens | dependency | infer s/ep | turns | invalid % | episodes | tokens |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in agg:
        em = "–" if math.isnan(r["em"]) else f"{r['em']:.3f} ± {r['em_std']:.2f}"
        lines.append(
            f"| {r['policy']} | {r['env'].split('/')[-1]} | {r['memory']} | {r['objectives']} | {em} | "
            f"{_fmt(r['f1'])} | {_fmt(r['reward'])} | {r['peak_tokens']:.1f} | {r['dependency']:.4g} | "
            f"{r['inference_s']:.3g} | {r['turns']:.2f} | {100 * r['invalid_rate']:.1f} | {r['episodes']} | "
            f"{r['token_unit']} |"
        )
    lines += ["", "Paper reference figures (arXiv 2506.15841):", ""]
    for frag, refs in PAPER_REFERENCES.items():
        for label, n, score, peak in refs:
            peak_txt = f", peak tokens {peak:.0f}" if peak is not None else ""
            lines.append(f"- {frag}, N={n}: {label} score {score}{peak_txt}")
    return "\n".join(lines) + "\n"


_LINE_STYLES = ["-", "--", ":", "-."]
_LINE_MARKERS = ["o", "s", "^", "v"]
_REFERENCE_MARKERS = ["*", "D", "P", "X"]


def plot_results(rows: Iterable[dict], out_dir: str | Path) -> list[Path]:
    """One PNG per (policy, env): score and peak tokens vs N, a line per memory policy, paper points alongside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    agg = aggregate(rows)
    for policy, env_id in sorted({(r["policy"], r["env"]) for r in agg}):
        mine = [r for r in agg if r["policy"] == policy and r["env"] == env_id]
        col, label, scale = _score_name(env_id)
        fig, (ax_score, ax_peak) = plt.subplots(1, 2, figsize=(11, 4.2))
        # Memory policies can coincide (mem1 == window:1): distinct dashes and markers keep both visible.
        styles = zip(sorted({r["memory"] for r in mine}), _LINE_STYLES * 4, _LINE_MARKERS * 4)
        for memory, linestyle, marker in styles:
            pts = sorted((r for r in mine if r["memory"] == memory), key=lambda r: r["objectives"])
            xs = [r["objectives"] for r in pts]
            for ax, ys in ((ax_score, [scale * r[col] for r in pts]), (ax_peak, [r["peak_tokens"] for r in pts])):
                ax.plot(xs, ys, linestyle=linestyle, marker=marker, markerfacecolor="none", label=memory)
        for (name, n, score, peak), marker in zip(_references(env_id), _REFERENCE_MARKERS):
            for ax, y in ((ax_score, score), (ax_peak, peak)):
                if y is None:
                    continue
                ax.scatter([n], [y], marker=marker, s=130, color="black", zorder=5, label=name)
                ax.annotate(f"{y:g}", (n, y), textcoords="offset points", xytext=(-10, 6), ha="right", fontsize=8)
        ns = sorted({r["objectives"] for r in mine} | {n for _, n, _, _ in _references(env_id)})
        unit = mine[0]["token_unit"]
        for ax, ylabel in ((ax_score, label), (ax_peak, f"peak tokens ({unit})")):
            if len(ns) > 1:
                ax.set_xscale("log", base=2)
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.set_xlabel("number of objectives N")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.margins(y=0.1)
            ax.legend(fontsize=8)
        fig.suptitle(f"{env_id} — policy {policy}")
        fig.tight_layout()
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{policy}_{env_id}").strip("_")
        path = Path(out_dir) / f"plot_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(rows: list[dict], out_dir: str | Path) -> dict[str, Path | list[Path]]:
    """Write ``results.md`` and the PNG plots for ``rows`` (as returned by :func:`run_eval`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "results.md"
    md.write_text(markdown_table(rows), encoding="utf-8")
    return {"csv": out / RESULTS_CSV, "markdown": md, "plots": plot_results(rows, out)}


# -- progress bar --------------------------------------------------------------


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="eval episodes", unit="ep", disable=not enabled or total == 0, file=sys.stderr)


# -- command line --------------------------------------------------------------


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``mem1 eval`` argument parser."""
    d = EvalConfig()
    p = argparse.ArgumentParser(prog="mem1 eval", description="Evaluate a policy over env x memory x N x seeds.")
    p.add_argument("--policy", default=d.policy, help="oracle | random | default | hf:PATH | openai:URL#MODEL")
    p.add_argument("--envs", type=_csv_list, default=d.envs, help="comma-separated env ids")
    p.add_argument("--memory", type=_csv_list, default=d.memories, dest="memories", help="e.g. full,mem1,window:1")
    p.add_argument("--objectives", type=_int_list, default=d.objectives, help="e.g. 1,2,4,8,16")
    p.add_argument("--seeds", type=_int_list, default=d.seeds, help="e.g. 0,1")
    p.add_argument("--episodes", type=int, default=d.episodes, help="episodes per cell")
    p.add_argument("--tags", default=d.tags, help="paper | checkpoint")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--out", default=d.out_dir, dest="out_dir")
    p.add_argument("--env-kwargs", type=json.loads, default={}, help='JSON, e.g. \'{"dataset": "fictional"}\'')
    p.add_argument("--tokenizer", default=None,
                   help="HF tokenizer of the served model (openai policies) or to count oracle/random tokens in")
    p.add_argument("--max-context-tokens", type=int, default=d.max_context_tokens)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda (HF policies)")
    p.add_argument("--model-seed", type=int, default=d.model_seed)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--timeout", type=float, default=d.timeout_s, dest="timeout_s")
    p.add_argument("--retries", type=int, default=d.retries)
    p.add_argument("--no-progress", action="store_false", dest="progress")
    return p


def cli(argv: list[str]) -> int:
    """``mem1 eval``: run the grid, print the Markdown table, write CSV/Markdown/PNGs."""
    args = build_parser().parse_args(argv)
    try:
        config = EvalConfig(**vars(args))
        rows = run_eval(config)
        paths = write_report(rows, config.out_dir)
    except (ValueError, RuntimeError) as err:
        print(f"mem1 eval: {err}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    print(f"wrote {paths['csv']}, {paths['markdown']} and {len(paths['plots'])} plot(s) in {config.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))


__all__ = [
    "COLUMNS", "KEY_COLUMNS", "Cell", "EvalConfig", "HFPolicy", "OpenAICompletionsPolicy", "OraclePolicy", "PAPER_REFERENCES",
    "Policy", "RandomFormatPolicy", "aggregate", "append_result", "close_open_action", "grid",
    "make_policy", "markdown_table", "plot_results", "read_results", "run_eval", "write_report",
]
