"""Weights & Biases logging is optional: never imported by default, a clear error when enabled without the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mem1_agent.cli import main
from mem1_agent.config import load_config
from mem1_agent.errors import UserError
from mem1_agent.wandb_logging import start_wandb

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "examples" / "configs" / "qa2_tiny.yaml")


def test_off_by_default_and_never_imported(tmp_path):
    assert load_config(PRESET).train.wandb is None
    assert start_wandb(None, {}, str(tmp_path)) is None
    code = (
        "import sys; from mem1_agent.train import Trainer; from mem1_agent.config import load_config;"
        f"cfg = load_config({PRESET!r}, ['train.output_dir={tmp_path}']); Trainer(cfg);"
        "print('wandb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_enabled_without_the_package_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an environment without wandb looks like to import
    with pytest.raises(UserError, match="pip install wandb, or set train.wandb=null"):
        start_wandb({"project": "p"}, {}, str(tmp_path))
    assert main(["train", "--config", PRESET, f"train.output_dir={tmp_path}", "train.wandb={project: p}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "mem1 train: train.wandb is set but the 'wandb' package is not installed: pip install wandb, or set train.wandb=null"
    assert not (tmp_path / "checkpoint.json").exists()
    with pytest.raises(UserError, match="must be a mapping"):
        start_wandb("p", {}, str(tmp_path))  # type: ignore[arg-type]
