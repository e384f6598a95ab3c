"""``mem1 train``: SFT, PPO, GRPO or SFT-then-PPO on accelerate, from a YAML config.

    mem1 train --config examples/configs/qa2_tiny.yaml [section.key=value ...]
    accelerate launch --num_processes 2 --multi_gpu -m mem1_agent.cli train --config ...

On a machine without CUDA the second command runs two CPU processes (torchrun underneath, gloo
backend). ``accelerate launch --cpu`` with accelerate 1.x starts a single process unless an MPI
hostfile is configured, so it is not the way to get several CPU processes.

Each process rolls out its own episodes (distinct task seeds) and the gradients are
averaged by accelerate (DDP), so parameters stay identical across processes; PPO whitens
advantages over every process's action tokens, and the logged scalars are combined over
processes (:func:`combine_scalars`). ``train.mixed_precision`` runs every forward (rollout,
reference, training) under the same autocast, parameters staying fp32. The run
writes to ``train.output_dir``: ``checkpoint.json`` and the snapshot folder it names (atomic,
hashed, no pickles; rerunning the same command continues the run, see :mod:`mem1_agent.checkpoint`),
``config.yaml``, TensorBoard scalars under ``tb/<phase>/`` (steps re-run after a resume replace the
ones logged before it) and ``results.json`` (held-out evaluation before/after, when asked for).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    checkpoint_info,
    clean_stale,
    load_checkpoint,
    load_model_tensors,
    load_tensors,
    model_tensors,
    save_checkpoint,
    save_tensors,
)
from .config import Config, ConfigError, EnvConfig, load_config, save_config
from .grpo import grpo_iteration, group_seeds
from .policy import LMPolicy, SamplingConfig
from .ppo import expose_config, ppo_iteration
from .rollout import rollout
from .sharding import full, gathered_parameters, is_sharded
from .wandb_logging import start_wandb

#: Snapshot name of the SFT model, the KL reference of the PPO phase of ``sft+ppo``
#: (the LM's weights, or with LoRA the SFT adapters that were merged into the base).
REFERENCE = "reference"
#: Task seeds of different iterations / processes never collide below this many tasks per iteration.
_SEED_STRIDE = 100_000


# -- environments ------------------------------------------------------------------


def make_text_env(cfg: EnvConfig, **overrides: Any) -> Any:
    """The text env ``cfg`` describes (``overrides`` win over ``cfg.kwargs``)."""
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the environments)

    kwargs: dict[str, Any] = {"memory": cfg.memory, **cfg.kwargs}
    if cfg.max_turns is not None:
        kwargs["max_turns"] = cfg.max_turns
    if cfg.split is not None:
        kwargs["split"] = cfg.split
    kwargs.update(overrides)
    try:
        if ":" in cfg.id and "/" not in cfg.id:
            module, _, name = cfg.id.partition(":")
            env = getattr(importlib.import_module(module), name)(**kwargs)
        else:
            env = gym.make(cfg.id, disable_env_checker=True, **kwargs)
    except (TypeError, ValueError) as err:
        # gymnasium appends the whole kwargs dict to the constructor's message; the first clause says it.
        reason = str(err).split(" was raised from the environment creator")[0]
        raise ConfigError(f"env {cfg.id!r} rejected its arguments {sorted(kwargs)}: {reason}") from None
    return env


def make_env(cfg: EnvConfig, tokenizer: Any, **overrides: Any) -> Any:
    """One ``TokenizedEnv`` over the env ``cfg`` describes."""
    from mem1_gym.wrappers import TokenizedEnv

    return TokenizedEnv(make_text_env(cfg, **overrides), tokenizer, max_length=cfg.max_length)


def make_envs(cfg: EnvConfig, tokenizer: Any, **overrides: Any) -> list[Any]:
    """``cfg.num_envs`` environments, the rollout batch."""
    return [make_env(cfg, tokenizer, **overrides) for _ in range(cfg.num_envs)]


# -- evaluation ----------------------------------------------------------------------


def summarize(episodes: Sequence[Any]) -> dict[str, float]:
    """Mean reward, EM, F1, peak tokens and turns over episodes (metrics an episode lacks are skipped)."""
    out: dict[str, float] = {"episodes": float(len(episodes))}
    if not episodes:
        return out
    out["reward"] = sum(ep.reward for ep in episodes) / len(episodes)
    for key in ("em", "f1", "peak_tokens", "turns", "invalid_turns"):
        vals = [float(ep.metrics[key]) for ep in episodes if isinstance(ep.metrics.get(key), (int, float))]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def sampling_generator(model: Any, seed: int) -> torch.Generator:
    """A seeded ``torch.Generator`` on the device of ``model``'s parameters, where
    ``torch.multinomial`` samples (it refuses a generator on another device)."""
    return torch.Generator(device=next(model.parameters()).device).manual_seed(int(seed))


@torch.no_grad()
def evaluate(model: Any, tokenizer: Any, cfg: Config, progress: bool = False) -> dict[str, dict[str, float]]:
    """Held-out evaluation at each task size of ``cfg.eval``; ``{size: summary}``."""
    ev = cfg.eval
    sampling = SamplingConfig(max_new_tokens=ev.max_new_tokens, temperature=0.0 if ev.greedy else cfg.sampling.temperature)
    policy = LMPolicy(model, tokenizer, sampling=sampling, generator=sampling_generator(model, ev.seed))
    env_cfg = EnvConfig(**{**cfg.env.__dict__, "split": ev.split, "num_envs": max(1, min(ev.num_envs, ev.episodes))})
    results: dict[str, dict[str, float]] = {}
    for size in ev.sizes:
        overrides = {ev.scale_key: size} if ev.scale_key else {}
        envs = make_envs(env_cfg, tokenizer, **overrides)
        bar = _bar(ev.episodes, f"eval {ev.scale_key}={size}", progress)
        episodes, stats = rollout(envs, policy, [ev.seed + j for j in range(ev.episodes)], progress=bar)
        if bar is not None:
            bar.close()
        summary = summarize(episodes)
        summary["tokens_per_s"] = stats.tokens_per_second
        results[str(size)] = summary
    return results


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


# -- SFT -----------------------------------------------------------------------------


def oracle_episodes(cfg: Config, tokenizer: Any, seeds: Sequence[int]) -> list[Any]:
    """Episodes that follow ``env.unwrapped.oracle_action()`` (the SFT data)."""
    from .sft import oracle_episode

    env = make_text_env(cfg.env)
    return [oracle_episode(env, tokenizer, int(seed), max_length=cfg.env.max_length) for seed in seeds]


# -- the run --------------------------------------------------------------------------

#: Scalars summed over processes (counts and throughputs); ``MAX_SCALARS`` take the maximum;
#: every other scalar is averaged (each process contributes the same number of episodes).
SUM_SCALARS = ("episodes", "action_tokens", "tokens", "tokens_per_s", "rollout_tokens_per_s", "update_tokens_per_s")
MAX_SCALARS = ("logp_gap",)


def combine_scalars(per_process: Sequence[dict[str, float]]) -> dict[str, float]:
    """One process's scalars from every process's: sums, maxima or means (see ``SUM_SCALARS``)."""
    keys = [k for k in per_process[0] if all(k in d for d in per_process)]
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in per_process]
        out[k] = sum(vals) if k in SUM_SCALARS else max(vals) if k in MAX_SCALARS else sum(vals) / len(vals)
    return out


def set_phase_trainable(model: Any, phase: str) -> None:
    """Freeze the value head (and critic) for the ``sft`` phase, unfreeze them for ``rl``.

    SFT trains the LM alone. The value parameters would get no gradient, which DDP refuses, so
    they are frozen for that phase rather than hidden with ``find_unused_parameters``; a checkpoint
    of trainable parameters only (LoRA) taken in that phase therefore holds none of them.
    """
    for p in getattr(model, "value_parameters", list)():
        p.requires_grad_(phase != "sft")


@dataclass
class RunState:
    """Where the run is: phase (``sft`` / ``rl``), steps done in it, evaluation results.

    A finished phase keeps its step count, so rerunning with more steps or iterations continues it.
    """

    phase: str
    step: int = 0
    results: dict[str, Any] = field(default_factory=dict)


def _task_seeds(cfg: Config, iteration: int, rank: int, count: int) -> list[int]:
    base = (cfg.train.seed * 1_000 + iteration) * _SEED_STRIDE * 8 + rank * _SEED_STRIDE
    return [base + j for j in range(count)]


def build_policy(cfg: Config) -> tuple[Any, Any]:
    """The policy (value head for PPO, LoRA adapters, gradient checkpointing) and tokenizer of ``cfg``."""
    from .models import add_lora, enable_gradient_checkpointing, load_policy

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.model.dtype)
    if dtype is None:
        raise ConfigError(f"model.dtype must be float32, bfloat16 or float16, got {cfg.model.dtype!r}")
    model, tokenizer = load_policy(
        cfg.model.name, attn_implementation=cfg.model.attn_implementation, dtype=dtype,
        value_head=cfg.train.algorithm in ("ppo", "sft+ppo"), seed=cfg.train.seed, critic=cfg.model.critic,
    )
    if cfg.model.lora is not None:
        lora = cfg.model.lora
        add_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=lora.target_modules)
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model, tokenizer


def restore_sft_adapters(model: Any, out: Path) -> None:
    """LoRA ``sft+ppo`` in its PPO phase: merge the SFT adapters (saved at the phase switch) into the
    base and start fresh adapters, rebuilding the network the PPO checkpoint was taken from."""
    from .models import merge_lora

    tensors, meta = load_tensors(out, REFERENCE)
    if meta.get("kind") != "lora":
        raise CheckpointError(f"{out / (REFERENCE + '.json')} holds no LoRA adapters but model.lora is set")
    load_model_tensors(model.lm, tensors, dict(meta.get("aliases") or {}), True, str(out / (REFERENCE + ".json")))
    merge_lora(model)


def _allow_precision(precision: str) -> None:
    """Let a second run in the same process use another ``train.mixed_precision``.

    accelerate keeps one process-wide state and refuses a different precision once it exists;
    in a single process (a notebook, the tests) forgetting that state is safe. Launched
    processes run one trainer each, so their state is left alone.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != precision and shared.get("num_processes", 1) == 1:
        AcceleratorState._reset_state()


class Trainer:
    """Holds the model, reference, optimizer and accelerator of one ``mem1 train`` run."""

    def __init__(self, cfg: Config):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed

        from .models import frozen_reference

        self.cfg = cfg
        cuda = torch.cuda.is_available()
        precision = cfg.train.mixed_precision
        if precision == "fp16" and not cuda:
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU (accelerate runs no fp16 autocast on CPU); use bf16")
        if cfg.model.dtype in ("bfloat16", "float16"):
            warnings.warn(
                f"model.dtype={cfg.model.dtype} trains {cfg.model.dtype} parameters without fp32 master weights: "
                "AdamW updates below the dtype's resolution are rounded away. Prefer model.dtype=float32 with "
                "train.mixed_precision=bf16.", stacklevel=2,
            )
        _allow_precision(precision)
        # Without CUDA, say cpu=True so that several launched processes form a gloo (MULTI_CPU) group.
        # split_batches=True: we prepare no dataloader, and without it accelerate's scheduler wrapper
        # steps the schedule num_processes times per optimizer step (a warm-up would end early).
        self.accelerator = Accelerator(
            cpu=not cuda, mixed_precision=precision, dataloader_config=DataLoaderConfiguration(split_batches=True)
        )
        self.rank = self.accelerator.process_index
        self.out = Path(cfg.train.output_dir)
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)  # before W&B, which logs into it
            clean_stale(self.out)  # what a killed save left behind
        set_seed(cfg.train.seed, device_specific=False)
        # Before the model loads, so that W&B enabled without the package fails at once.
        self.wandb = start_wandb(cfg.train.wandb, cfg.to_dict(), cfg.train.output_dir) if self.accelerator.is_main_process else None
        algo = cfg.train.algorithm
        model, self.tokenizer = build_policy(cfg)
        self.lora = cfg.model.lora is not None
        self.pad_id = int(self.tokenizer.pad_token_id)
        kl = cfg.grpo.kl_coef if algo == "grpo" else cfg.ppo.kl_coef
        self.ref = None
        if algo != "sft" and kl > 0:
            # Prepared for evaluation only: no DDP, but the same autocast as the policy's forwards.
            self.ref = self.accelerator.prepare_model(frozen_reference(model), evaluation_mode=True)
        self.model = model
        self.writer = None
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        self.state = RunState(phase="sft" if algo.startswith("sft") else "rl")
        self._prepare(self.state.phase)
        if self.lora and algo == "sft+ppo" and is_sharded(self.model):
            raise ConfigError("sft+ppo with model.lora merges the SFT adapters into the weights, which FSDP-sharded "
                              "weights do not allow: run the sft phase without FSDP, `mem1 export` it, then ppo from the exported model")
        # Rollout sampling, on the model's device (saved in checkpoints, so a resumed run samples alike).
        self.generator = sampling_generator(self.accelerator.unwrap_model(self.model), cfg.train.seed * 7919 + self.rank)

    # -- set-up -----------------------------------------------------------------------

    def _prepare(self, phase: str) -> None:
        """Fresh optimizer and scheduler for ``phase`` (the learning rate differs between SFT and RL)."""
        cfg = self.cfg
        lr, wd = {"sft": (cfg.sft.lr, 0.0), "rl": (cfg.grpo.lr, cfg.grpo.weight_decay) if cfg.train.algorithm == "grpo" else (cfg.ppo.lr, cfg.ppo.weight_decay)}.get(phase, (cfg.ppo.lr, 0.0))
        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "optimizer") else self.model
        set_phase_trainable(model, phase)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=wd)
        warmup = max(cfg.train.lr_warmup, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        expose_config(self.model)

    def _set_sft_reference(self, save: bool) -> None:
        """After the SFT warm start, the KL reference is the SFT model, not the initial one.

        It is kept in the ``reference`` snapshot (written atomically at the switch) so a resumed
        PPO phase penalises the distance to the same reference. With LoRA the SFT adapters are
        merged into the base and fresh adapters trained from there: the reference (adapters off)
        is then the SFT model, and the snapshot holds the SFT adapters to rebuild that base.
        Call it before :meth:`_prepare` of the PPO phase (the LoRA merge replaces parameters).
        """
        current = self.accelerator.unwrap_model(self.model)
        if self.lora:
            if save:
                if self.accelerator.is_main_process:
                    tensors, aliases = model_tensors(current.lm, trainable_only=True)
                    save_tensors(self.out, REFERENCE, tensors, {"kind": "lora", "aliases": aliases})
                self.accelerator.wait_for_everyone()
            restore_sft_adapters(current, self.out)
            return
        if self.ref is None:
            return
        if save:
            if self.accelerator.is_main_process:
                tensors, aliases = model_tensors(current.lm)
                save_tensors(self.out, REFERENCE, tensors, {"kind": "lm", "aliases": aliases})
            self.accelerator.wait_for_everyone()
        tensors, meta = load_tensors(self.out, REFERENCE)
        load_model_tensors(self.ref.lm, tensors, dict(meta.get("aliases") or {}), False, str(self.out / (REFERENCE + ".json")))

    def save(self) -> None:
        """Atomic checkpoint of the current state (with LoRA: adapters, value head, optimizer)."""
        save_checkpoint(
            self.out, self.model, step=self.state.step, optimizer=self.optimizer, scheduler=self.scheduler,
            extra={"phase": self.state.phase, "results": self.state.results}, accelerator=self.accelerator,
            generator=self.generator, trainable_only=self.lora,
        )

    def resume(self) -> bool:
        """Load ``output_dir``'s checkpoint when there is one; True if the run continues from it."""
        info = checkpoint_info(self.out)
        if info is None:
            return False
        # The network and optimizer must be the phase's before its state can be loaded into them.
        phase = info["extra"].get("phase", self.state.phase)
        if phase == "rl" and self.cfg.train.algorithm == "sft+ppo" and (self.lora or self.ref is not None):
            self._set_sft_reference(save=False)
        if phase != self.state.phase:
            self.state.phase = phase
            self._prepare(phase)
        loaded = load_checkpoint(self.out, self.model, self.optimizer, self.scheduler, self.accelerator, self.generator)
        if loaded is None:
            raise CheckpointError(f"{self.out / CHECKPOINT_FILE} vanished while resuming")
        self.state.step = loaded["step"]
        self.state.results = loaded["extra"].get("results", {})
        return True

    def _open_writer(self, purge_step: int) -> None:
        """TensorBoard writer of the current phase; events at ``purge_step`` and later, logged by an
        earlier attempt that was not checkpointed, are hidden (they are about to be logged again)."""
        if not self.accelerator.is_main_process:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.writer is not None:
            self.writer.close()
        self.writer = SummaryWriter(str(self.out / "tb" / self.state.phase), purge_step=purge_step)

    def ranks_in_sync(self) -> bool:
        """Whether every process holds bit-identical parameters (collective)."""
        sums = torch.stack([full(p.detach()).double().sum() for p in self.accelerator.unwrap_model(self.model).parameters()])
        gathered = self.accelerator.gather(sums.to(self.accelerator.device)[None]).cpu()
        return bool((gathered == gathered[0]).all())

    def log(self, scalars: dict[str, float], step: int, prefix: str, combine: bool = True) -> None:
        """TensorBoard (and W&B, when enabled) scalars, written by the main process. With ``combine`` they are
        combined over processes first (collective); evaluation, which every process runs alike, is not."""
        if combine and self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            scalars = combine_scalars(gather_object([scalars]))
        if self.writer is None:
            return
        for k, v in scalars.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()
        if self.wandb is not None:
            logged = {f"{prefix}/{k}": v for k, v in scalars.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            self.wandb.log({**logged, f"{prefix}/step": step})

    def print(self, *args: Any) -> None:
        """Print on the main process."""
        if self.accelerator.is_main_process:
            print(*args, flush=True)

    # -- phases ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run (or continue) the configured algorithm; returns the results (also in ``results.json``)."""
        cfg = self.cfg
        resumed = cfg.train.resume and self.resume()
        if resumed:
            self.print(f"resumed {self.out} at phase {self.state.phase!r}, step {self.state.step}")
        self._open_writer(self.state.step + 1 if resumed else 0)
        if cfg.train.eval_before and "before" not in self.state.results:
            self.state.results["before"] = self._evaluate("before")
        if self.state.phase == "sft":
            self._sft()
            if cfg.train.algorithm == "sft+ppo":
                if cfg.train.eval_after and "after_sft" not in self.state.results:
                    self.state.results["after_sft"] = self._evaluate("after_sft")
                self._set_sft_reference(save=True)
                self.state.phase, self.state.step = "rl", 0
                self._prepare("rl")
                self.save()
                self._open_writer(0)
        if self.state.phase == "rl":
            self._rl()
        if cfg.train.eval_after and "after" not in self.state.results:
            self.state.results["after"] = self._evaluate("after")
            self.save()
        results = {k: v for k, v in self.state.results.items() if v is not None}
        if self.accelerator.num_processes > 1:
            results["ranks_in_sync"] = self.ranks_in_sync()
            if not results["ranks_in_sync"]:
                self.print("WARNING: parameters differ across processes")
        if self.accelerator.is_main_process:
            (self.out / "results.json").write_text(json.dumps(results, indent=2))
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
        return results

    def _evaluate(self, label: str) -> dict[str, Any]:
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        with gathered_parameters(model), self.accelerator.autocast():
            results = evaluate(model, self.tokenizer, self.cfg, progress=self.cfg.train.progress and self.accelerator.is_main_process)
        for size, summary in results.items():
            self.print(f"eval {label} {self.cfg.eval.scale_key}={size}: " + ", ".join(f"{k}={v:.3f}" for k, v in summary.items()))
            self.log(summary, self.state.step, f"eval_{label}/{self.cfg.eval.scale_key}={size}", combine=False)
        return results

    def _sft(self) -> None:
        from .sft import sft_loss

        cfg, acc = self.cfg, self.accelerator
        seeds = [cfg.train.seed * _SEED_STRIDE + self.rank * cfg.sft.episodes + j for j in range(cfg.sft.episodes)]
        data = oracle_episodes(cfg, self.tokenizer, seeds)
        bar = _bar(cfg.sft.steps, "sft", cfg.train.progress and acc.is_main_process)
        if bar is not None:
            bar.update(self.state.step)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
        while self.state.step < cfg.sft.steps:
            step = self.state.step
            start = (step * cfg.sft.batch_size) % len(data)
            batch = [data[order[(start + j) % len(data)]] for j in range(cfg.sft.batch_size)]
            self.model.train()
            t0 = time.perf_counter()
            loss, n_tokens = sft_loss(self.model, batch, self.pad_id, self.cfg.model.attn_implementation)
            self.optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.sft.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            self.state.results.pop("after", None)  # a continued run must be evaluated again
            scalars = {
                "loss": float(loss.detach()), "grad_norm": float(grad_norm), "tokens": float(n_tokens),
                "tokens_per_s": n_tokens / (time.perf_counter() - t0), "lr": float(self.scheduler.get_last_lr()[0]),
            }
            self.log(scalars, self.state.step, "sft")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if self.state.step % max(cfg.train.save_every, 1) == 0 or self.state.step == cfg.sft.steps:
                self.save()
        if bar is not None:
            bar.close()

    def _rl(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        algo = "grpo" if cfg.train.algorithm == "grpo" else "ppo"
        envs = make_envs(cfg.env, self.tokenizer)
        bar = _bar(cfg.train.iterations, algo, cfg.train.progress and acc.is_main_process)
        if bar is not None:
            bar.update(self.state.step)
        while self.state.step < cfg.train.iterations:
            it = self.state.step
            unwrapped = acc.unwrap_model(self.model)
            unwrapped.eval()
            policy = LMPolicy(unwrapped, self.tokenizer, sampling=cfg.sampling, generator=self.generator)
            if algo == "grpo":
                seeds = group_seeds(_task_seeds(cfg, it, self.rank, cfg.grpo.tasks_per_iteration), cfg.grpo.group_size)
            else:
                seeds = _task_seeds(cfg, it, self.rank, cfg.ppo.episodes_per_iteration)
            # FSDP: whole weights, no collectives while ranks generate. Rollout under the training
            # forwards' autocast: recorded and trained log-probs share a precision.
            with gathered_parameters(unwrapped), acc.autocast():
                episodes, rstats = rollout(envs, policy, seeds)
            # Mini-batch order: a function of (seed, iteration, rank), so a resumed run shuffles alike.
            shuffle = torch.Generator().manual_seed(_task_seeds(cfg, it, self.rank, 1)[0])
            t0 = time.perf_counter()
            iteration = grpo_iteration if algo == "grpo" else ppo_iteration
            stats = iteration(
                self.model, self.ref, self.optimizer, episodes, cfg.grpo if algo == "grpo" else cfg.ppo, self.pad_id,
                acc, self.scheduler, shuffle, temperature=cfg.sampling.temperature,
            )
            update_s = time.perf_counter() - t0
            summary = summarize(episodes)
            scalars = {
                **stats,
                **summary,
                "rollout_tokens_per_s": rstats.tokens_per_second,
                "update_tokens_per_s": stats.get("action_tokens", 0.0) / update_s if update_s > 0 else 0.0,
                "lr": float(self.scheduler.get_last_lr()[0]),
            }
            self.state.step += 1
            self.state.results.pop("after", None)  # a continued run must be evaluated again
            self.log(scalars, self.state.step, algo)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{summary.get('reward', 0.0):.2f}", kl=f"{stats.get('kl', 0.0):.4f}")
            if self.state.step % max(cfg.train.save_every, 1) == 0 or self.state.step == cfg.train.iterations:
                self.save()
        if bar is not None:
            bar.close()


def train(cfg: Config) -> dict[str, Any]:
    """Run ``cfg``; returns the evaluation results."""
    return Trainer(cfg).run()


def describe(cfg: Config) -> str:
    """One line saying what ``cfg`` runs and where it writes."""
    steps = {"sft": f"{cfg.sft.steps} SFT steps", "sft+ppo": f"{cfg.sft.steps} SFT steps then {cfg.train.iterations} PPO iterations"}
    work = steps.get(cfg.train.algorithm, f"{cfg.train.iterations} {cfg.train.algorithm.upper()} iterations")
    return (
        f"{work} of model {cfg.model.name!r} on {cfg.env.id} (memory={cfg.env.memory}, {cfg.env.num_envs} envs), "
        f"writing {cfg.train.output_dir}"
    )


def cli(argv: list[str]) -> int:
    """``mem1 train --config FILE [section.key=value ...]``."""
    from .threads import add_threads_argument, apply_threads

    parser = argparse.ArgumentParser(prog="mem1 train", description="Train a MEM1 agent (sft, ppo, grpo, sft+ppo).")
    parser.add_argument("--config", help="YAML config (see examples/configs/)")
    parser.add_argument("--defaults", action="store_true", help="run the built-in defaults without a config file")
    add_threads_argument(parser)
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. ppo.lr=1e-5 train.iterations=3")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"mem1 train: {err}", file=sys.stderr)
        return 2
    if args.config is None and not args.defaults:
        print(f"mem1 train: no --config given; the defaults would run {describe(cfg)}.", file=sys.stderr)
        print("Pass --config FILE (presets: examples/configs/), or --defaults to run them.", file=sys.stderr)
        return 2
    # Fail on a bad env id, memory policy or env argument now, not after loading the model.
    make_text_env(cfg.env).close()
    threads = apply_threads(args.threads)
    # Under ``accelerate launch`` every process runs this; only the first one reports (errors go to all).
    report = print if os.environ.get("RANK", "0") == "0" else (lambda *_, **__: None)
    report(f"mem1 train: {describe(cfg)} ({threads} CPU threads)", flush=True)
    try:
        results = train(cfg)
    except (CheckpointError, ConfigError) as err:
        print(f"mem1 train: {err}", file=sys.stderr)
        return 2
    if results:
        report(json.dumps(results, indent=2))
    out = Path(cfg.train.output_dir)
    written = [name for name in ("checkpoint.json", "config.yaml", "tb", "results.json") if (out / name).exists()]
    report(f"wrote {', '.join(written)} in {out}")
    last = results.get("after") or results.get("after_sft") or {}
    headline = ", ".join(f"N={n} EM={s.get('em', float('nan')):.3f}" for n, s in last.items() if isinstance(s, dict))
    report(f"done: {cfg.train.algorithm} finished" + (f"; held-out {headline}" if headline else " (no held-out evaluation; set train.eval_after=true)"))
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Leave the process group, together, before the interpreter exits.

    Under ``accelerate launch`` a rank that exits with the gloo group still up can abort in the
    group's teardown ("terminate called without an active exception", seen once in four 2-process
    CPU runs), failing a run that finished. Not done in ``Trainer.run``: a script may run a trainer
    again in the same process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
