"""The MEM1 agent: LLM policies, rollout, stitched masked trajectories, PPO/GRPO/SFT trainers, evaluation.

The public API — the pieces to compose an algorithm of your own (see
``examples/custom_algorithm.py``):

* policies: :func:`load_policy` (``"tiny"``, ``"default"``, a hub id or a path -> policy, tokenizer),
  :class:`PolicyWithValue`, :func:`frozen_reference`, :class:`LMPolicy` (batched generation with
  log-probs), :class:`SamplingConfig`;
* environments: :func:`make_env` (``"toy"``, ``"qa"`` or any registered id), ``TokenizedEnv`` from
  ``mem1_gym.wrappers``;
* data: :func:`rollout` (a batch of token-level envs -> :class:`Episode` s, :class:`RolloutStats`),
  :func:`oracle_episode` (an expert episode), :class:`EpisodeBuilder`;
* trajectories: :func:`stitch` (episodes -> :class:`StitchedBatch`), :func:`stitched_forward`
  (one forward -> per-action-token log-probs, values, entropy; accepts a plain HF causal LM too),
  :func:`per_turn_logprobs` (the per-turn reference);
* losses: :func:`sft_loss`, PPO's :func:`policy_loss`, :func:`value_loss`, :func:`compute_gae`,
  :func:`kl_k1` / :func:`kl_k3`, :func:`masked_mean`; GRPO's :func:`group_advantages`, :func:`group_seeds`;
  whole iterations :func:`ppo_iteration` / :func:`grpo_iteration` with :class:`PPOConfig` / :class:`GRPOConfig`;
* runs: :class:`Config`, :func:`load_config`, :func:`train`, :func:`check_consistency`.

Names are imported on first use, so ``import mem1_agent`` stays cheap (no torch until needed).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["load_policy", "PolicyWithValue", "frozen_reference", "tiny_model", "tiny_tokenizer"], "models"),
    **dict.fromkeys(["LMPolicy", "SamplingConfig", "Generation"], "policy"),
    **dict.fromkeys(["rollout", "RolloutStats"], "rollout"),
    **dict.fromkeys(
        ["Episode", "EpisodeBuilder", "SegmentTokens", "TurnRecord", "StitchedBatch", "stitch", "stitched_forward", "per_turn_logprobs"],
        "trajectory",
    ),
    **dict.fromkeys(["oracle_episode", "sft_loss"], "sft"),
    **dict.fromkeys(
        ["PPOConfig", "policy_loss", "value_loss", "compute_gae", "kl_k1", "kl_k3", "masked_mean", "ppo_iteration"], "ppo"
    ),
    **dict.fromkeys(["GRPOConfig", "group_advantages", "group_seeds", "grpo_iteration"], "grpo"),
    **dict.fromkeys(["Config", "load_config"], "config"),
    "train": "train",
    "make_env": "toy_task",
}
#: public name -> (module, attribute) where the two differ
_RENAMED: dict[str, tuple[str, str]] = {"check_consistency": ("consistency", "check")}

__all__ = sorted([*_EXPORTS, *_RENAMED, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    elif name in _RENAMED:
        module, attr = _RENAMED[name]
    else:
        raise AttributeError(f"module 'mem1_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _PublicAPI(types.ModuleType):
    """The package module, keeping public functions that share a submodule's name (``rollout``, ``train``).

    Importing a submodule sets it as an attribute of its package; without this guard
    ``mem1_agent.rollout`` would become the module once ``mem1_agent.rollout`` was imported
    anywhere. The submodules stay importable as usual (``from mem1_agent.rollout import ...``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicAPI
