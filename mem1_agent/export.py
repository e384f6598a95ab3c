"""``mem1 export RUN_DIR OUT_DIR``: a trained run's policy as a plain Hugging Face model folder.

The run's ``config.yaml`` rebuilds the network (base model, LoRA adapters), its verified
checkpoint is loaded into it, LoRA adapters are merged into the weights (peft
``merge_and_unload``) and the LM is written with ``save_pretrained`` together with its
tokenizer, so ``AutoModelForCausalLM.from_pretrained(OUT_DIR)``, ``mem1 eval --policy hf:OUT_DIR``
and ``mem1 serve-policy --model OUT_DIR`` use it without peft. The value head is not exported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, checkpoint_info, load_checkpoint
from .config import ConfigError, load_config


def load_run(run_dir: str | Path) -> tuple[Any, Any]:
    """The policy of ``run_dir`` at its last checkpoint, and its tokenizer."""
    from .train import build_policy, restore_sft_adapters, set_phase_trainable

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    info = checkpoint_info(run_dir)
    if info is None:
        raise CheckpointError(f"{run_dir} holds no checkpoint (checkpoint.json)")
    model, tokenizer = build_policy(cfg)
    # Trainable parameters as when the checkpoint was taken: an sft-phase LoRA checkpoint has no value head.
    set_phase_trainable(model, info["extra"].get("phase", "rl"))
    if cfg.model.lora is not None and cfg.train.algorithm == "sft+ppo" and info["extra"].get("phase") == "rl":
        restore_sft_adapters(model, run_dir)
    load_checkpoint(run_dir, model)
    return model.eval(), tokenizer


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``run_dir``'s policy LM (adapters merged) and tokenizer to ``out_dir``."""
    from .models import merged_lm

    model, tokenizer = load_run(run_dir)
    lm = merged_lm(model)
    out_dir = Path(out_dir)
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def cli(argv: list[str]) -> int:
    """``mem1 export RUN_DIR OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="mem1 export", description="Export a training run's policy as a plain HF model folder (LoRA merged).")
    parser.add_argument("run_dir", help="train.output_dir of the run")
    parser.add_argument("out_dir", help="folder to write (save_pretrained)")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out_dir)
    except (CheckpointError, ConfigError) as err:
        print(f"mem1 export: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.run_dir} to {out}")
    return 0
