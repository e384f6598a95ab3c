"""scripts/gpu_check.py cannot rot: its tiny CPU mode runs every check it can run without a GPU."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load():
    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.slow
def test_tiny_mode_prints_the_table(capsys):
    gpu_check = _load()
    assert gpu_check.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^\| tiny +\| ([^|]+)\| +([^|]*)\|", out, re.M)}
    assert set(rows) == {"rollout (continuous)", "ppo sdpa", "ppo sdpa + grad ckpt", "ppo sdpa + LoRA + grad ckpt", "forward sdpa", "forward flex"}
    for check in ("rollout (continuous)", "ppo sdpa", "ppo sdpa + grad ckpt", "ppo sdpa + LoRA + grad ckpt"):
        assert float(rows[check]) > 0, check
    assert "skipped: flex attention is checked on CUDA only" in out


@pytest.mark.parametrize("shape, billions", [("qwen2.5-0.5b", 0.494), ("qwen2.5-1.5b", 1.544)])
def test_model_shapes_have_the_published_sizes(shape, billions):
    """The hand-written configs give Qwen2.5's parameter counts (built on the meta device: no memory)."""
    gpu_check = _load()
    lm = gpu_check.qwen2(shape, "sdpa", torch.device("meta"))
    assert sum(p.numel() for p in lm.parameters()) / 1e9 == pytest.approx(billions, abs=0.002)
