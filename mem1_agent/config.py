"""Training configuration: dataclasses, loaded from YAML with ``key=value`` command-line overrides.

``load_config("examples/configs/qa2_tiny.yaml", ["ppo.lr=1e-5", "train.iterations=3"])`` reads the
file, applies the overrides (values parsed as YAML scalars, so ``1e-5``, ``true``, ``[2, 4]`` work),
checks every key and type against the dataclasses below, and returns a :class:`Config`. Unknown keys
and values of the wrong type raise :class:`ConfigError` naming the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import UserError
from .grpo import GRPOConfig
from .policy import SamplingConfig
from .ppo import PPOConfig


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


@dataclass
class LoraSettings:
    """LoRA adapters (through peft) on the policy's LM (and a separate critic's).

    The base weights stay frozen; the adapters and the value head are trained. The KL reference
    is the same network with the adapters switched off (no second copy); checkpoints hold the
    adapters and head only; ``mem1 export`` merges the adapters into a plain HF folder.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter input.
        target_modules: module names to adapt (``null``: peft's default for the architecture,
            e.g. ``q_proj``/``v_proj`` for Llama/Qwen2; ``[all-linear]``: every linear layer).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"model.lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ModelConfig:
    """Which policy to train.

    Attributes:
        name: ``"default"`` (SmolLM2-135M-Instruct), ``"tiny"``, a hub id or a local path.
        attn_implementation: ``eager``, ``sdpa`` or ``flex_attention``.
        dtype: parameter dtype, ``float32`` (the default and the recommended one: with
            ``train.mixed_precision=bf16`` it gives fp32 master weights) or ``bfloat16``/``float16``
            (pure low-precision training: AdamW updates smaller than the dtype's resolution are
            rounded away, so the trainer warns).
        critic: PPO's value model, named like ``name`` (``null``: a value head on the policy).
            A separate critic must share the policy's tokenizer; it is trained with the policy's
            optimizer and learning rate.
        gradient_checkpointing: recompute the decoder layers' activations in the backward pass
            (HF ``gradient_checkpointing_enable``, non-reentrant): less memory, same gradients.
        lora: LoRA adapter settings (``null``: train every weight); on the command line
            ``'model.lora={r: 8, alpha: 16}'`` (a YAML mapping) or ``model.lora.r=8``.
    """

    name: str = "tiny"
    attn_implementation: str = "sdpa"
    dtype: str = "float32"
    critic: str | None = None
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        from .models import check_attn_implementation

        try:
            check_attn_implementation(self.attn_implementation)
        except ValueError as err:
            raise ConfigError(f"model.attn_implementation: {err}") from None


@dataclass
class EnvConfig:
    """The environments rollouts run in (each wrapped in ``TokenizedEnv``).

    Attributes:
        id: a registered Gymnasium id, or ``"module:Class"`` of a ``TurnEnv``.
        memory: memory policy spec.
        max_turns: turn limit (None: the env's default).
        max_length: token budget of a context (``TokenizedEnv`` truncates the episode beyond it).
        num_envs: environments stepped together (the generation batch).
        split: split training tasks are drawn from (passed as ``split`` when not None).
        kwargs: further keyword arguments of the env (e.g. ``n_objectives``, ``dataset``, ``topk``).
    """

    id: str = "mem1_gym/MultiObjectiveQA-v0"
    memory: str = "mem1"
    max_turns: int | None = None
    max_length: int = 2048
    num_envs: int = 4
    split: str | None = "train"
    kwargs: dict = field(default_factory=dict)


@dataclass
class SFTSettings:
    """Supervised warm start on oracle trajectories.

    Attributes:
        steps: optimizer steps.
        lr: learning rate (AdamW).
        batch_size: episodes per step.
        episodes: oracle episodes collected (distinct task seeds).
        max_grad_norm: gradient clipping norm.
    """

    steps: int = 100
    lr: float = 5e-5
    batch_size: int = 4
    episodes: int = 64
    max_grad_norm: float = 1.0


@dataclass
class EvalConfig:
    """Held-out evaluation before/after training.

    Attributes:
        scale_key: env keyword that sets the task size (``n_objectives`` for QA).
        sizes: task sizes evaluated (e.g. ``[2, 4, 8]``).
        episodes: episodes per size.
        split: split of the held-out tasks.
        seed: first task seed (tasks ``seed .. seed + episodes - 1``).
        greedy: decode greedily (temperature 0) during evaluation.
        max_new_tokens: per-turn token limit during evaluation.
        num_envs: episodes generated together (the evaluation batch).
    """

    scale_key: str = "n_objectives"
    sizes: list[int] = field(default_factory=lambda: [2])
    episodes: int = 8
    split: str | None = "test"
    seed: int = 100_000
    greedy: bool = True
    max_new_tokens: int = 128
    num_envs: int = 8


@dataclass
class TrainConfig:
    """The run itself.

    Attributes:
        algorithm: ``sft``, ``ppo``, ``grpo`` or ``sft+ppo``.
        output_dir: checkpoint, TensorBoard logs and results go here.
        iterations: RL iterations (rollout + update).
        save_every: checkpoint every this many iterations (and at the end).
        seed: seeds model init, sampling and task draws.
        resume: continue from ``output_dir``'s checkpoint when there is one.
        eval_before: evaluate before training; ``eval_after``: after.
        progress: show tqdm progress bars.
        lr_warmup: linear warm-up over this many optimizer steps (then constant), on any number
            of processes.
        mixed_precision: ``no``, ``bf16`` or ``fp16`` (CUDA only): forwards run under autocast in
            that precision — rollout, reference and training forwards alike, so recorded and
            trained log-probs come from the same arithmetic — while parameters and optimizer
            state stay in ``model.dtype`` (fp32 master weights with the default ``float32``).
        wandb: ``wandb.init`` arguments (e.g. ``{project: mem1}``) to log to Weights & Biases next to
            TensorBoard; ``null`` (default) never imports wandb.
    """

    algorithm: str = "ppo"
    output_dir: str = "runs/mem1"
    iterations: int = 10
    save_every: int = 1
    seed: int = 0
    resume: bool = True
    eval_before: bool = False
    eval_after: bool = False
    progress: bool = True
    lr_warmup: int = 0
    # YAML reads a bare ``no`` as false, so a bool is accepted here and turned back into "no".
    mixed_precision: str | bool = "no"
    wandb: dict | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"train.algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.mixed_precision is False:
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"train.mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")


ALGORITHMS = ("sft", "ppo", "grpo", "sft+ppo")
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class Config:
    """Everything ``mem1 train`` needs, one section per concern."""

    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sft: SFTSettings = field(default_factory=SFTSettings)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.model.critic is not None and self.train.algorithm not in ("ppo", "sft+ppo"):
            raise ConfigError(
                f"model.critic is PPO's value model; train.algorithm={self.train.algorithm!r} has no critic "
                "(set model.critic=null)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (what ``load_config`` reads back)."""
        return dataclasses.asdict(self)


# -- loading --------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints widen to floats); raise ConfigError otherwise."""
    if dataclasses.is_dataclass(tp):  # an optional section, e.g. model.lora
        return _build(tp, value, key)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:  # one real option (``X | None``): its own error says most
            raise ConfigError(errors[0])
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r} ({type(value).__name__})")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r} ({type(value).__name__})")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-5" (no dot) as a string; accept any numeric spelling.
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!s}; valid keys{' of ' + prefix if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        kwargs[name] = _build(tp, value, key) if dataclasses.is_dataclass(tp) else _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: cannot parse the value: {err}") from None
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), cls: type = Config) -> Any:
    """Read a YAML config (or start from the defaults when ``path`` is None) and apply overrides.

    ``cls`` is the dataclass to build (``Config`` for training; ``mem1 eval`` passes its ``EvalConfig``).
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: invalid YAML: {getattr(err, 'problem', err)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    for override in overrides:
        _apply_override(data, override)
    try:
        return _build(cls, data, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path is not None else str(err)) from None


def save_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML (loadable by :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
