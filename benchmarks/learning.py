"""Learning evidence: does RL (PPO, GRPO) improve a MEM1 agent beyond its SFT start?

    python benchmarks/learning.py [--config benchmarks/learning.yaml] [--out runs/learning]
                                  [--results benchmarks/results] [--threads 1] [section.key=value ...]

Per seed, on the fictional multi-objective QA world under the ``mem1`` memory policy:

1. build a word-level tokenizer over the world and a small Llama from scratch
   (:mod:`mem1_agent.word_model`);
2. **sft**: SFT at N=2 on demonstrations of an oracle that answers too early in a share
   ``experiment.oracle_error`` of its episodes (:mod:`mem1_gym.imperfect_oracle`), so imitation
   has a ceiling;
3. **sft+ppo** and **sft+grpo**: PPO and GRPO from that same SFT model, on the paper-faithful
   reward (the EM sum of the plain ``MultiObjectiveQA-v0``), at N=2, with the trainers of
   ``mem1 train`` (:class:`mem1_agent.train.Trainer`), evaluated on the held-out tasks every
   ``experiment.curve_every`` iterations (the learning curves);
4. every arm evaluated greedily on the same held-out tasks (split ``test``; task seeds
   ``eval.seed .. eval.seed + experiment.tasks - 1``) at each N of ``experiment.sizes`` under
   ``mem1``, and the SFT model under ``full`` too.

Writes ``learning.json`` (per-seed EM per arm and N, EM = per-task EM sum / N; per-task EM;
the difference sft+ppo - sft at N=2 with 95% confidence intervals: Welch over seeds, paired
over seeds, and a paired bootstrap over tasks) and the PNG curves to ``--results``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DEFAULT_CONFIG = Path(__file__).with_name("learning.yaml")
#: The imperfect demonstrator the SFT phase imitates (the RL phases and the evaluation use the plain env).
DEMO_ENV = "mem1_gym.imperfect_oracle:PrematureAnswerQAEnv"
RL_ARMS = {"sft+ppo": "ppo", "sft+grpo": "grpo"}


@dataclass
class ExperimentSettings:
    """The experiment around the training runs.

    Attributes:
        seeds: one replicate per seed (RL sampling, task draws and value-head init; and, without
            ``sft_seed``, the model init and SFT data order).
        sft_seed: train one SFT model, with this seed, as the common start of every seed's RL arms
            (``null``: a separate SFT model per seed).
        arms: which arms to run (``sft`` always runs: the RL arms start from it).
        tasks: held-out tasks per cell (the same task seeds for every arm, size and seed).
        sizes: objective counts N evaluated under ``mem1``; the first is the training size.
        full_sizes: objective counts at which the SFT model is also evaluated under ``full``.
        curve_every: evaluate at the training size every this many RL iterations.
        oracle_error: share of demonstrations that answer before the last question (see
            :mod:`mem1_gym.imperfect_oracle`).
        eval_batch: episodes generated together during evaluation.
        bootstrap: resamples of the paired bootstrap over tasks.
        sft_warmup: linear learning-rate warm-up steps of the SFT phase.
        train_tasks_seed: first task seed of the in-distribution cell (arms ``<arm>@train``): the same
            number of tasks at the training size drawn from split ``train`` (questions the models were
            trained on, in new combinations). It separates what RL improved from what carries over
            to unseen questions; the held-out cells stay the reported result.
        base: ``word`` (a word-level :func:`~mem1_agent.word_model.small_llama` built from scratch) or
            any model :func:`~mem1_agent.models.load_policy` loads (``default`` is SmolLM2-135M).
        vocab_size: subword vocabulary size of the word tokenizer (``null``: a token per word and per
            entity name; see :func:`~mem1_agent.word_model.word_tokenizer`; ``base: word`` only).
        model: :func:`mem1_agent.word_model.small_llama` arguments (``base: word`` only).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sft_seed: int | None = None
    arms: list[str] = field(default_factory=lambda: ["sft", "sft+ppo", "sft+grpo"])
    tasks: int = 64
    sizes: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    full_sizes: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    curve_every: int = 5
    oracle_error: float = 0.6
    eval_batch: int = 32
    bootstrap: int = 10_000
    sft_warmup: int = 0
    train_tasks_seed: int = 900_000
    base: str = "word"
    vocab_size: int | None = None
    model: dict = field(default_factory=dict)


def _learning_config_class() -> type:
    from mem1_agent.config import Config

    @dataclass
    class LearningConfig(Config):
        """``mem1 train``'s :class:`~mem1_agent.config.Config` plus the ``experiment`` section."""

        experiment: ExperimentSettings = field(default_factory=ExperimentSettings)

    return LearningConfig


def load_config_file(path: str | Path | None = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> Any:
    """The experiment's config: a YAML file (default ``benchmarks/learning.yaml``) with ``key=value`` overrides."""
    from mem1_agent.config import load_config

    return load_config(path, overrides, cls=_learning_config_class())


def train_config(lc: Any, **sections: dict[str, Any]) -> Any:
    """A plain training ``Config`` from the learning config, with ``sections`` fields replaced."""
    from mem1_agent.config import Config

    parts = {f.name: copy.deepcopy(getattr(lc, f.name)) for f in fields(Config)}
    for name, values in sections.items():
        for key, value in values.items():
            setattr(parts[name], key, value)
    return Config(**parts)


# -- evaluation ----------------------------------------------------------------------------


def evaluate_tasks(model: Any, tokenizer: Any, cfg: Any, size: int, memory: str, tasks: int, batch: int,
                   keep_text: bool = False) -> list[dict[str, Any]]:
    """Greedy episodes on the held-out tasks ``cfg.eval.seed ..`` at ``size`` objectives: per-task metrics
    (and, with ``keep_text``, the first and last action texts)."""
    import torch

    from mem1_agent.config import EnvConfig
    from mem1_agent.policy import LMPolicy, SamplingConfig
    from mem1_agent.rollout import rollout
    from mem1_agent.train import make_envs

    env_cfg = EnvConfig(**{**cfg.env.__dict__, "memory": memory, "split": cfg.eval.split, "num_envs": min(batch, tasks)})
    envs = make_envs(env_cfg, tokenizer, **{cfg.eval.scale_key: size})
    policy = LMPolicy(getattr(model, "module", model), tokenizer, sampling=SamplingConfig(max_new_tokens=cfg.eval.max_new_tokens, temperature=0.0))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        episodes, _ = rollout(envs, policy, [cfg.eval.seed + j for j in range(tasks)])
    model.train(was_training)
    out: list[dict[str, Any]] = []
    for ep in episodes:
        row: dict[str, Any] = {"em": float(ep.metrics.get("em", 0.0)), "peak_tokens": float(ep.metrics.get("peak_tokens", 0.0)),
                               "turns": float(ep.metrics.get("turns", 0.0))}
        if keep_text:
            row["first_action"] = tokenizer.decode(ep.action_ids(0))
            row["last_action"] = tokenizer.decode(ep.action_ids(len(ep.turns) - 1))
        out.append(row)
    return out


# -- statistics ------------------------------------------------------------------------------


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom (numerical, ~1e-6)."""
    if math.isnan(df) or df <= 0:
        return float("nan")
    if math.isinf(df):
        return statistics.NormalDist().inv_cdf(p)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 20_001)
        pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
        return 0.5 + float(np.trapezoid(pdf, grid))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and t-based 95% interval half-width over ``values`` (seeds)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    half = t_quantile(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": float(half), "n": n}


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of a - b with Welch's 95% interval (unequal variances)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "ci95": [diff, diff], "df": float("inf")}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.975, df) * se
    return {"diff": diff, "ci95": [diff - half, diff + half], "df": df}


def paired_seeds(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of the per-seed differences a - b (same SFT start) with a paired t 95% interval."""
    d = np.asarray(a, float) - np.asarray(b, float)
    s = mean_ci(d)
    return {"diff": s["mean"], "ci95": [s["mean"] - s["ci95"], s["mean"] + s["ci95"]], "df": len(d) - 1}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0) -> dict[str, float]:
    """Per-task differences (a - b, each (seeds, tasks), averaged over seeds), resampled over tasks: 95% percentile interval."""
    d = (np.asarray(a, float) - np.asarray(b, float)).mean(axis=0)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "resamples": resamples, "tasks": len(d)}


# -- the experiment -----------------------------------------------------------------------------


class _Recorder:
    """Keeps every scalar a :class:`~mem1_agent.train.Trainer` logs (TensorBoard gets them too)."""

    def __init__(self, trainer: Any):
        self.rows: list[dict[str, Any]] = []
        log = trainer.log

        def record(scalars: dict[str, float], step: int, prefix: str) -> None:
            log(scalars, step, prefix)
            self.rows.append({"prefix": prefix, "step": step, **{k: float(v) for k, v in scalars.items() if isinstance(v, (int, float))}})

        trainer.log = record


def _grid(model: Any, tokenizer: Any, cfg: Any, ex: ExperimentSettings, memory: str, sizes: Sequence[int], say: Any,
          label: str | None = None) -> dict[str, list[dict[str, float]]]:
    """Per-task results at each N of ``sizes`` under ``memory`` on the tasks of ``cfg.eval``."""
    out = {}
    for n in sizes:
        t0 = time.perf_counter()
        out[str(n)] = evaluate_tasks(model, tokenizer, cfg, n, memory, ex.tasks, ex.eval_batch)
        em = sum(t["em"] for t in out[str(n)]) / (n * ex.tasks)
        say(f"    eval {label or memory} N={n}: EM/N {em:.3f} ({time.perf_counter() - t0:.0f} s)")
    return out


def _train_tasks(model: Any, tokenizer: Any, lc: Any, say: Any) -> dict[str, list[dict[str, float]]]:
    """The in-distribution cell: greedy EM at the training size on ``tasks`` tasks of split ``train``."""
    ex: ExperimentSettings = lc.experiment
    cfg = train_config(lc, env={"kwargs": {**lc.env.kwargs, lc.eval.scale_key: ex.sizes[0]}},
                       eval={"split": "train", "seed": ex.train_tasks_seed})
    return _grid(model, tokenizer, cfg, ex, "mem1", [ex.sizes[0]], say, label="mem1, split train")


def _cached(path: Path, compute: Any) -> Any:
    """``compute()``'s JSON result, kept in ``path`` so a rerun (or another worker) reuses it."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return value


def train_sft(lc: Any, seed: int, out: Path, say: Any, grid: bool = True) -> dict[str, Any]:
    """SFT of a fresh small model on the imperfect demonstrations, and its held-out grid.

    The trained model (``out/sft<seed>/model``) and the grid are kept: a rerun reuses them.
    """
    from mem1_agent.models import load_policy
    from mem1_agent.train import Trainer
    from mem1_agent.word_model import build_word_model

    ex: ExperimentSettings = lc.experiment
    env_kwargs = {**lc.env.kwargs, lc.eval.scale_key: ex.sizes[0]}
    folder = out / f"sft{seed}" / "model"

    def train() -> dict[str, Any]:
        t0 = time.perf_counter()
        init: Any = ex.base
        if ex.base == "word":
            init = build_word_model(out / f"sft{seed}" / "init", dataset_size=env_kwargs.get("dataset_size"),
                                    dataset_seed=env_kwargs.get("dataset_seed", 0), seed=seed,
                                    vocab_size=ex.vocab_size, **ex.model)
        cfg = train_config(
            lc,
            train={"algorithm": "sft", "output_dir": str(out / f"sft{seed}" / "run"), "seed": seed, "resume": False,
                   "eval_before": False, "eval_after": False, "progress": False, "save_every": 10**9,
                   "lr_warmup": ex.sft_warmup},
            model={"name": str(init)},
            env={"id": DEMO_ENV, "kwargs": {**env_kwargs, "oracle_error": ex.oracle_error}},
        )
        trainer = Trainer(cfg)
        rec = _Recorder(trainer)
        trainer.run()
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.lm.save_pretrained(folder)
        trainer.tokenizer.save_pretrained(folder)  # written last: its presence marks a complete model
        seconds = time.perf_counter() - t0
        say(f"  SFT seed {seed}: {cfg.sft.steps} steps in {seconds:.0f} s, last loss {rec.rows[-1].get('loss', float('nan')):.3f}")
        return {"logs": rec.rows, "seconds_sft": seconds}

    if (folder / "tokenizer_config.json").is_file() and not (out / f"sft{seed}" / "sft.json").is_file():
        # Trained by an earlier process that kept only the model: its time and losses are in its log / TensorBoard.
        meta = _cached(out / f"sft{seed}" / "sft.json", lambda: {"logs": None, "seconds_sft": None})
    else:
        meta = _cached(out / f"sft{seed}" / "sft.json", train)
    result = {"folder": str(folder), **meta}
    if grid:
        def evaluate() -> dict[str, Any]:
            model, tokenizer = load_policy(str(folder), attn_implementation=lc.model.attn_implementation, value_head=False)
            eval_cfg = train_config(lc, env={"kwargs": env_kwargs})
            t0 = time.perf_counter()
            grids = {"sft": _grid(model, tokenizer, eval_cfg, ex, "mem1", ex.sizes, say),
                     "sft@full": _grid(model, tokenizer, eval_cfg, ex, "full", ex.full_sizes, say),
                     "sft@train": _train_tasks(model, tokenizer, lc, say)}
            return {"grids": grids, "seconds_eval_sft": time.perf_counter() - t0}

        result.update(_cached(out / f"sft{seed}" / "grids.json", evaluate))
    return result


def train_rl(lc: Any, arm: str, seed: int, sft: dict[str, Any], out: Path, say: Any) -> dict[str, Any]:
    """One RL arm from the SFT model: its learning curve (iteration 0 is the SFT model), final grid and log."""
    from mem1_agent.train import Trainer

    ex: ExperimentSettings = lc.experiment
    algo = RL_ARMS[arm]
    train_n = ex.sizes[0]
    env_kwargs = {**lc.env.kwargs, lc.eval.scale_key: train_n}
    eval_cfg = train_config(lc, env={"kwargs": env_kwargs})
    t0 = time.perf_counter()
    cfg = train_config(
        lc,
        train={"algorithm": algo, "output_dir": str(out / f"seed{seed}" / algo), "seed": seed, "resume": False,
               "eval_before": False, "eval_after": False, "progress": False, "save_every": 10**9},
        model={"name": str(sft["folder"])},
        env={"kwargs": env_kwargs},
    )
    total = cfg.train.iterations
    trainer = Trainer(cfg)
    rec = _Recorder(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    curve: dict[str, list] = {"iterations": [], "em": []}
    for stop in [0, *range(ex.curve_every, total, ex.curve_every), total]:
        if stop:
            trainer.cfg.train.iterations = stop
            trainer.run()
        tasks = evaluate_tasks(model, trainer.tokenizer, eval_cfg, train_n, "mem1", ex.tasks, ex.eval_batch)
        curve["iterations"].append(stop)
        curve["em"].append(sum(t["em"] for t in tasks) / (train_n * ex.tasks))
        say(f"    seed {seed} {arm} iteration {stop}: held-out EM/N {curve['em'][-1]:.3f}")
    seconds = time.perf_counter() - t0
    say(f"  seed {seed}: {arm} {total} iterations in {seconds:.0f} s (with curve evaluation)")
    grid = _grid(model, trainer.tokenizer, eval_cfg, ex, "mem1", ex.sizes, say)
    return {"curve": curve, "grid": grid, "grid_train": _train_tasks(model, trainer.tokenizer, lc, say),
            "logs": rec.rows, "seconds": seconds}


def run_seed(lc: Any, seed: int, out: Path, say: Any, sft: dict[str, Any]) -> dict[str, Any]:
    """The RL arms of one seed from ``sft`` (kept in ``out/seed<seed>/<algo>.json``: a rerun reuses them)."""
    ex: ExperimentSettings = lc.experiment
    result: dict[str, Any] = {"grids": {}, "curves": {}, "logs": {}}
    for arm, algo in RL_ARMS.items():
        if arm in ex.arms:
            rl = _cached(out / f"seed{seed}" / f"{algo}.json", lambda: train_rl(lc, arm, seed, sft, out, say))
            result["grids"][arm], result["curves"][arm], result["logs"][arm] = rl["grid"], rl["curve"], rl["logs"]
            result["grids"][f"{arm}@train"] = rl["grid_train"]
            result[f"seconds_{algo}"] = rl["seconds"]
    return result


def _with_sft(result: dict[str, Any], sft: dict[str, Any]) -> dict[str, Any]:
    """A seed's result with its SFT start's grids, log and times."""
    return {**result, "grids": {**sft["grids"], **result["grids"]}, "logs": {"sft": sft["logs"], **result["logs"]},
            "seconds_sft": sft["seconds_sft"], "seconds_eval_sft": sft["seconds_eval_sft"]}


def summarise(lc: Any, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """learning.json's arms, curves and differences from the per-seed results."""
    ex: ExperimentSettings = lc.experiment
    arms: dict[str, Any] = {}
    for arm in seeds[0]["grids"]:
        by_n = seeds[0]["grids"][arm]
        entry: dict[str, Any] = {"memory": "full" if arm.endswith("@full") else "mem1",
                                 "split": "train" if arm.endswith("@train") else "test",
                                 "em": {}, "peak_tokens": {}, "turns": {}, "em_mean_ci95": {}, "per_task_em": {}}
        for n in by_n:
            per_seed = [s["grids"][arm][n] for s in seeds]
            entry["em"][n] = [sum(t["em"] for t in tasks) / (int(n) * len(tasks)) for tasks in per_seed]
            entry["peak_tokens"][n] = [sum(t["peak_tokens"] for t in tasks) / len(tasks) for tasks in per_seed]
            entry["turns"][n] = [sum(t["turns"] for t in tasks) / len(tasks) for tasks in per_seed]
            entry["em_mean_ci95"][n] = mean_ci(entry["em"][n])
            entry["per_task_em"][n] = [[t["em"] for t in tasks] for tasks in per_seed]
        arms[arm] = entry
    curves = {}
    for arm in RL_ARMS:
        if arm in seeds[0]["curves"]:
            its = seeds[0]["curves"][arm]["iterations"]
            ems = np.array([s["curves"][arm]["em"] for s in seeds])
            curves[arm] = {"iterations": its, "em": ems.T.tolist(),
                           "mean": ems.mean(axis=0).tolist(), "ci95": [mean_ci(ems[:, i])["ci95"] for i in range(len(its))]}
    differences = {}
    n0 = str(ex.sizes[0])
    pairs = [(arm, "sft", "") for arm in RL_ARMS] + [(f"{arm}@train", "sft@train", ", split train") for arm in RL_ARMS]
    for arm, base, where in pairs:
        if arm not in arms or base not in arms:
            continue
        for n in arms[arm]["em"]:
            a, b = arms[arm]["em"][n], arms[base]["em"][n]
            pa = np.array(arms[arm]["per_task_em"][n]) / int(n)
            pb = np.array(arms[base]["per_task_em"][n]) / int(n)
            differences[f"{arm.split('@')[0]} - sft @ N={n}{where}"] = {
                "welch_over_seeds": welch(a, b),
                "paired_over_seeds": paired_seeds(a, b),
                "paired_bootstrap_over_tasks": paired_bootstrap(pa, pb, ex.bootstrap),
            }
    key = f"sft+ppo - sft @ N={n0}"
    verdict = None
    if key in differences:
        d = differences[key]
        excl = {name: d[name]["ci95"][0] > 0 for name in d}
        # The seed-level paired interval: the bootstrap over tasks ignores seed variance and is the narrowest.
        verdict = {"ppo_beats_sft_at_training_size": excl["paired_over_seeds"], "ci_excludes_zero_above": excl}
        inside = differences.get(f"{key}, split train")
        if inside is not None:
            verdict["ppo_beats_sft_on_training_questions"] = inside["paired_over_seeds"]["ci95"][0] > 0
    return {"arms": arms, "curves": curves, "differences": differences, "verdict": verdict}


def plot(summary: dict[str, Any], lc: Any, results: Path) -> list[str]:
    """Learning curves (held-out EM at the training size vs RL iteration) and EM vs N, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex: ExperimentSettings = lc.experiment
    paths: list[str] = []

    def finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, name: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(results / name, dpi=120)
        plt.close(fig)
        paths.append(str(results / name))

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, c in summary["curves"].items():
        x, m, h = np.array(c["iterations"]), np.array(c["mean"]), np.array(c["ci95"])
        ax.plot(x, m, marker="o", label=arm)
        ax.fill_between(x, m - h, m + h, alpha=0.2)
    sft = summary["arms"]["sft"]["em_mean_ci95"][str(ex.sizes[0])]
    ax.axhline(sft["mean"], color="gray", linestyle="--", label="sft")
    finish(fig, ax, "RL iteration", f"held-out EM / N (N={ex.sizes[0]}, {ex.tasks} tasks)",
           f"Learning curves, mean and 95% CI over {len(ex.seeds)} seeds", "learning_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, entry in summary["arms"].items():
        if entry["split"] != "test":
            continue
        ns = sorted(entry["em_mean_ci95"], key=int)
        m = np.array([entry["em_mean_ci95"][n]["mean"] for n in ns])
        h = np.array([entry["em_mean_ci95"][n]["ci95"] for n in ns])
        ax.errorbar([int(n) for n in ns], m, yerr=h, marker="o", capsize=3, label=f"{arm} ({entry['memory']})")
    ax.set_xscale("log", base=2)
    finish(fig, ax, f"objectives N (trained at N={ex.sizes[0]})", "held-out EM / N",
           "Generalisation to more objectives (95% CI over seeds)", "learning_by_n.png")
    return paths


def diagnose(lc: Any, folder: str, tasks: int) -> dict[str, dict[str, float]]:
    """Why a model scores what it does, per split at the training size (greedy, the held-out task seeds):
    EM / N, how often its first query is question 1's gold first hop (reading the task), and how often
    its answer holds ``unknown`` (the demonstrator's early answer)."""
    import re

    from mem1_agent.models import load_policy
    from mem1_agent.train import make_text_env

    model, tokenizer = load_policy(folder, attn_implementation=lc.model.attn_implementation, value_head=False)
    n = lc.experiment.sizes[0]
    out = {}
    for split in ("train", "test"):
        cfg = train_config(lc, env={"kwargs": {**lc.env.kwargs, lc.eval.scale_key: n}}, eval={"split": split})
        per_task = evaluate_tasks(model, tokenizer, cfg, n, "mem1", tasks, lc.experiment.eval_batch, keep_text=True)
        env = make_text_env(cfg.env, split=split, **{lc.eval.scale_key: n})
        first_ok = 0
        for j, task in enumerate(per_task):
            env.reset(seed=cfg.eval.seed + j)
            item = env.unwrapped.task.items[0]
            m = re.search(r"<query>(.*?)</query>", task["first_action"])
            first_ok += bool(m) and m.group(1).strip() == (item.gold_queries or (item.question,))[0]
        out[split] = {"em_over_n": sum(t["em"] for t in per_task) / (n * tasks), "first_query_is_gold": first_ok / tasks,
                      "answers_unknown": sum("unknown" in t["last_action"] for t in per_task) / tasks}
    return out


def markdown_table(doc: dict[str, Any]) -> str:
    """learning.json as Markdown: EM / N per arm and N (mean ± 95% CI over seeds), then the differences."""
    sizes = sorted({n for entry in doc["arms"].values() for n in entry["em"]}, key=int)
    lines = ["| arm | memory | tasks | " + " | ".join(f"N={n}" for n in sizes) + " |", "|---|---|---|" + "---:|" * len(sizes)]
    for arm, entry in doc["arms"].items():
        cells = []
        for n in sizes:
            s = entry["em_mean_ci95"].get(n)
            cells.append("–" if s is None else f"{s['mean']:.3f} ± {s['ci95']:.3f}")
        split = entry.get("split", "test")
        lines.append(f"| {arm} | {entry['memory']} | {'held-out (test)' if split == 'test' else 'training questions'} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| difference | Welch over seeds | paired over seeds | paired bootstrap over tasks |", "|---|---|---|---|"]
    for name, d in doc["differences"].items():
        cells = [f"{d[k]['diff']:+.3f} [{d[k]['ci95'][0]:+.3f}, {d[k]['ci95'][1]:+.3f}]"
                 for k in ("welch_over_seeds", "paired_over_seeds", "paired_bootstrap_over_tasks")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": list(load)}


def run_jobs(args: argparse.Namespace, lc: Any, out: Path, say: Any) -> list[Path]:
    """Train every arm in ``args.jobs`` ``--worker`` processes; each keeps its part on disk for ``main`` to reuse.

    With a shared SFT model it is trained here first, and then each (seed, RL arm) pair is a job, while
    this process evaluates the SFT model; with an SFT model per seed, each seed is a job. Returns the
    logs of the jobs that failed.
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    ex: ExperimentSettings = lc.experiment
    if ex.sft_seed is not None:
        train_sft(lc, ex.sft_seed, out, say, grid=False)
        jobs = [[f"experiment.seeds=[{s}]", f"experiment.arms=[sft, {arm}]"] for s in ex.seeds for arm in RL_ARMS if arm in ex.arms]
    else:
        jobs = [[f"experiment.seeds=[{s}]"] for s in ex.seeds]
    # The SFT phase above used all --threads; the workers share them.
    base = [sys.executable, str(Path(__file__).resolve()), "--worker", "--config", args.config, "--out", str(out),
            "--threads", str(max(1, args.threads // args.jobs)), *args.overrides]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def work(k: int) -> int:
        with open(logs / f"job{k}.log", "w") as log:
            say(f"  job {k}: {' '.join(jobs[k])} (log {logs / f'job{k}.log'})")
            return subprocess.run([*base, *jobs[k]], stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = pool.map(work, range(len(jobs)))
        if ex.sft_seed is not None:
            train_sft(lc, ex.sft_seed, out, say)  # the SFT grid, while the workers train
        return [logs / f"job{k}.log" for k, code in enumerate(codes) if code != 0]


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment YAML (default benchmarks/learning.yaml)")
    parser.add_argument("--out", default="runs/learning", help="runs (models, checkpoints, TensorBoard) go here")
    parser.add_argument("--results", default=str(Path(__file__).with_name("results")), help="learning.json and PNGs go here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the RL arms in this many worker processes (sharing --threads torch threads)")
    parser.add_argument("--worker", action="store_true",
                        help="run one part (the SFT model and the listed seeds) and keep it on disk for a later full run")
    parser.add_argument("--diagnose", metavar="MODEL_DIR",
                        help="greedy EM, first-query and early-answer rates of a saved model on train vs test tasks, then exit")
    parser.add_argument("--report", metavar="JSON", help="print an existing learning.json as Markdown tables and exit")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. experiment.seeds=[0] train.iterations=2")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown_table(json.loads(Path(args.report).read_text())), end="")
        return 0
    if args.diagnose:
        lc = load_config_file(args.config, args.overrides)
        print(json.dumps(diagnose(lc, args.diagnose, lc.experiment.tasks), indent=1))
        return 0
    import torch

    from mem1_agent.config import ConfigError

    try:
        lc = load_config_file(args.config, args.overrides)
    except ConfigError as err:
        print(f"learning: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine_before = _machine()

    def say(msg: str) -> None:
        # One write per line: the --jobs threads report concurrently.
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {msg}\n", end="", flush=True)

    ex = lc.experiment
    if args.worker:
        # One part of a run split over processes: SFT (and, with no seeds listed, its grid), then the
        # listed seeds' RL arms, each kept on disk; the same command without --worker then reuses them all.
        sft_seeds = [ex.sft_seed] if ex.sft_seed is not None else ex.seeds
        for s in sft_seeds:
            sft = train_sft(lc, s, out, say, grid=not ex.seeds)
            for seed in ex.seeds if ex.sft_seed is not None else [s]:
                run_seed(lc, seed, out, say, sft)
        say("worker done")
        return 0
    if args.jobs > 1:
        failed = run_jobs(args, lc, out, say)
        if failed:
            print(f"learning: {len(failed)} job(s) failed; see {', '.join(map(str, failed))}", file=sys.stderr)
            return 1
    shared = train_sft(lc, ex.sft_seed, out, say) if ex.sft_seed is not None else None
    per_seed = []
    for seed in ex.seeds:
        sft = shared or train_sft(lc, seed, out, say)
        per_seed.append(_with_sft(run_seed(lc, seed, out, say, sft), sft))
    summary = summarise(lc, per_seed)
    doc = {
        "command": " ".join(["python", "benchmarks/learning.py", *(argv if argv is not None else sys.argv[1:])]),
        "tasks_per_seed": lc.experiment.tasks,
        "seeds": lc.experiment.seeds,
        "sizes": lc.experiment.sizes,
        "training_size": lc.experiment.sizes[0],
        "eval_task_seeds": [lc.eval.seed, lc.eval.seed + lc.experiment.tasks - 1],
        "em_definition": "per-task EM sum / N, mean over the held-out tasks (1.0 = every objective right)",
        **summary,
        "minutes": (time.perf_counter() - started) / 60,
        "machine": {"before": machine_before, "after": _machine(), "torch_threads": args.threads},
        "seconds": {k: [s[k] for s in per_seed] for k in per_seed[0] if k.startswith("seconds_")},
        "train_logs": {str(seed): s["logs"] for seed, s in zip(lc.experiment.seeds, per_seed)},
        "config": {**train_config(lc).to_dict(), "experiment": lc.experiment.__dict__},
    }
    doc["plots"] = [Path(p).name for p in plot(summary, lc, results)]  # next to learning.json
    (results / "learning.json").write_text(json.dumps(doc, indent=1))
    say(f"wrote {results / 'learning.json'}")
    print(markdown_table(doc), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
