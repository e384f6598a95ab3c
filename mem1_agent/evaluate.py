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

Policies live in :mod:`mem1_agent.eval_policies`, tables and plots in
:mod:`mem1_agent.eval_report`; this module holds the grid, the batched
episode loop, the results file and the command line.

Function API::

    rows = run_eval(EvalConfig(policy="oracle", memories=["full", "mem1"]))
    write_report(rows, "runs/eval")
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

import mem1_gym  # noqa: F401  (registers the environments)
from mem1_gym.protocol import get_tag_set

from .eval_policies import (
    HFPolicy,
    OpenAICompletionsPolicy,
    OraclePolicy,
    Policy,
    RandomFormatPolicy,
    close_open_action,
    load_tokenizer,
    token_unit,
)
from .eval_report import (
    PAPER_REFERENCES,
    RESULTS_CSV,
    aggregate,
    markdown_table,
    plot_results,
    tool_error_warning,
    write_report,
)

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


def make_policy(config: EvalConfig) -> Policy:
    """Build the policy named by ``config.policy``."""
    spec = config.policy
    tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
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
        policy = HFPolicy.load(
            spec.removeprefix("hf:"), config.tags, config.max_new_tokens, config.temperature, config.top_p,
            config.device, config.model_seed, config.max_context_tokens,
        )
    else:
        raise ValueError(f"unknown policy {spec!r}; use oracle, random, default, hf:PATH or openai:URL#MODEL")
    if tokenizer is not None:
        policy.tokenizer = tokenizer
    policy.max_context_tokens = config.max_context_tokens
    return policy


# -- the grid --------------------------------------------------------------------

#: Columns identifying a cell; a row with the same values is a finished cell.
KEY_COLUMNS = ("policy", "policy_settings", "env", "memory", "objectives", "seed", "episodes", "tags", "env_kwargs")
METRIC_COLUMNS = (
    "em", "em_std", "f1", "reward", "peak_tokens", "dependency", "inference_s",
    "turns", "invalid_rate", "tool_errors", "token_unit", "finished_at",
)
COLUMNS = KEY_COLUMNS + METRIC_COLUMNS


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

    def key(self, config: EvalConfig, policy: Policy) -> tuple[str, ...]:
        """Values of :data:`KEY_COLUMNS`, as written to the CSV."""
        kwargs = json.dumps(config.env_kwargs, sort_keys=True, default=str)
        return (policy.name, policy.settings(), self.env, self.memory, str(self.objectives), str(self.seed),
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
        pending = [c for c in cells if c.key(config, policy) not in done]
        unit = token_unit(policy)
        bar = _progress(len(pending) * config.episodes, config.progress)

        def finish(cell: Cell, episodes: list[dict]) -> None:
            row = _cell_row(cell, config, policy, unit, episodes)
            append_result(csv_path, row)
            done[cell.key(config, policy)] = _as_strings(row)

        _run_cells(pending, config, policy, finish, bar)
        bar.close()
        return [_typed(done[c.key(config, policy)]) for c in cells]
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
        try:
            slot.env = policy.wrap_env(gym.make(cell.env, **kwargs))
        except (TypeError, ValueError) as err:  # e.g. an env kwarg it does not take
            slot.env = None
            raise ValueError(f"cannot make {cell.env} with {kwargs}: {err}") from None
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


def _cell_row(cell: Cell, config: EvalConfig, policy: Policy, unit: str, episodes: list[dict]) -> dict:
    """Aggregate one cell's episodes into a CSV row."""
    key = dict(zip(KEY_COLUMNS, cell.key(config, policy)))
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
        # Failed tool calls per episode (a retriever that is down): NaN where the env has no tools.
        "tool_errors": _mean(episodes, "tool_errors"),
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

def load_results(out_dir: str | Path) -> list[dict]:
    """Every row of ``out_dir``'s results CSV, typed (e.g. to redraw the report: ``write_report(load_results(d), d)``)."""
    return [_typed(row) for row in read_results(Path(out_dir) / RESULTS_CSV)]


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
    """The ``mem1 eval`` argument parser (flags left out keep the config file's or the default value)."""
    d = EvalConfig()
    p = argparse.ArgumentParser(
        prog="mem1 eval",
        description="Evaluate a policy over env x memory x N x seeds. Settings come from the defaults, then "
        "--config FILE (YAML of EvalConfig fields), then key=value overrides, then the flags.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("overrides", nargs="*", default=[], help="EvalConfig overrides, e.g. episodes=4 'memories=[mem1]'")
    p.add_argument("--config", default=None, help="YAML file of EvalConfig fields")
    p.add_argument("--policy", help=f"oracle | random | default | hf:PATH | openai:URL#MODEL (default {d.policy})")
    p.add_argument("--envs", type=_csv_list, help="comma-separated env ids")
    p.add_argument("--memory", type=_csv_list, dest="memories", help="e.g. full,mem1,window:1")
    p.add_argument("--objectives", type=_int_list, help="e.g. 1,2,4,8,16")
    p.add_argument("--seeds", type=_int_list, help="e.g. 0,1")
    p.add_argument("--episodes", type=int, help=f"episodes per cell (default {d.episodes})")
    p.add_argument("--tags", help="paper | checkpoint")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--out", dest="out_dir", help=f"output folder (default {d.out_dir})")
    p.add_argument("--env-kwargs", type=json.loads, dest="env_kwargs", help='JSON, e.g. \'{"dataset": "fictional"}\'')
    p.add_argument("--tokenizer", help="HF tokenizer of the served model (openai policies) or to count tokens in")
    p.add_argument("--max-context-tokens", type=int, dest="max_context_tokens")
    p.add_argument("--device", help="auto | cpu | cuda (HF policies)")
    p.add_argument("--model-seed", type=int, dest="model_seed")
    p.add_argument("--max-new-tokens", type=int, dest="max_new_tokens")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float, dest="top_p")
    p.add_argument("--timeout", type=float, dest="timeout_s")
    p.add_argument("--retries", type=int)
    p.add_argument("--no-progress", action="store_false", dest="progress")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the free cores, see mem1_agent.threads)")
    return p


def config_from_args(argv: list[str]) -> EvalConfig:
    """Defaults, then ``--config`` YAML, then ``key=value`` overrides, then explicit flags.

    Raises:
        ValueError: a bad file, key, type or value (the config module's ``ConfigError``).
    """
    from .config import load_config

    flags = vars(build_parser().parse_args(argv))
    flags.pop("threads", None)  # a process setting, applied by cli(), not part of the grid
    base = load_config(flags.pop("config", None), flags.pop("overrides", []), cls=EvalConfig)
    return dataclasses.replace(base, **flags) if flags else base


def cli(argv: list[str]) -> int:
    """``mem1 eval``: run the grid, print the Markdown table, write CSV/Markdown/PNGs."""
    from .threads import apply_threads

    try:
        explicit = vars(build_parser().parse_args(argv))
        config = config_from_args(argv)
        if "objectives" in explicit:
            without = [env for env in config.envs if not _accepts_objectives(env)]
            if without and len(without) == len(config.envs):
                raise ValueError(f"--objectives: {', '.join(without)} has no objectives (no n_objectives argument); drop --objectives")
            if without:
                print(f"mem1 eval: note: {', '.join(without)} has no objectives; it runs once (N=1)", file=sys.stderr)
        apply_threads(explicit.get("threads"))
        rows = run_eval(config)
        paths = write_report(rows, config.out_dir)
    except (ValueError, RuntimeError) as err:
        print(f"mem1 eval: {err}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    warning = tool_error_warning(rows)
    if warning:
        print(warning, file=sys.stderr)
    print(f"wrote {paths['csv']}, {paths['markdown']} and {len(paths['plots'])} plot(s) in {config.out_dir}")
    print(f"done: {len(rows)} cell(s), {sum(int(r.get('episodes', 0)) for r in rows)} episode(s) of policy {config.policy}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))


__all__ = [
    "COLUMNS", "KEY_COLUMNS", "Cell", "EvalConfig", "HFPolicy", "OpenAICompletionsPolicy", "OraclePolicy", "PAPER_REFERENCES",
    "Policy", "RandomFormatPolicy", "aggregate", "append_result", "close_open_action", "grid",
    "load_results", "make_policy", "markdown_table", "plot_results", "read_results", "run_eval", "write_report",
]
