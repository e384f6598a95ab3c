"""Atomic, resumable checkpoints: round trip, crash between temp write and rename, kill mid-save."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mem1_agent.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint


def _setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return model, opt, sched


def _train_step(model, opt, sched):
    loss = model(torch.randn(3, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_round_trip_restores_model_optimizer_scheduler_and_rng(tmp_path):
    model, opt, sched = _setup(0)
    _train_step(model, opt, sched)
    gen = torch.Generator().manual_seed(5)
    torch.rand(1, generator=gen)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched, extra={"phase": "rl"}, generator=gen)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen)))
    _train_step(model, opt, sched)
    ref_params = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sched2 = _setup(1)
    gen2 = torch.Generator().manual_seed(99)
    state = load_checkpoint(tmp_path, model2, opt2, sched2, generator=gen2)
    assert state == {"step": 1, "extra": {"phase": "rl"}}
    assert (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen2))) == expected
    assert sched2.get_last_lr() == pytest.approx([5e-3])
    # Continuing the restored run gives the same parameters as the uninterrupted one.
    torch.manual_seed(123)
    model3, opt3, sched3 = _setup(0)
    load_checkpoint(tmp_path, model3, opt3, sched3)
    random.random(), np.random.rand(), torch.rand(1)  # the draws the first run made after saving
    _train_step(model3, opt3, sched3)
    for a, b in zip(ref_params, model3.parameters()):
        assert torch.equal(a, b)


def test_no_checkpoint_returns_none(tmp_path):
    model, opt, sched = _setup(0)
    assert load_checkpoint(tmp_path, model, opt, sched) is None


def test_crash_between_temp_write_and_rename_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched)
    _train_step(model, opt, sched)

    def crash(src, dst):
        raise KeyboardInterrupt("killed between the temp write and the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, step=2, optimizer=opt, scheduler=sched)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]  # no temp file left behind
    fresh, fopt, fsched = _setup(3)
    assert load_checkpoint(tmp_path, fresh, fopt, fsched)["step"] == 1


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint at all")
    model, opt, sched = _setup(0)
    with pytest.raises(CheckpointError, match=CHECKPOINT_FILE):
        load_checkpoint(tmp_path, model, opt, sched)


SAVER = textwrap.dedent(
    """
    import sys, torch
    from mem1_agent.checkpoint import save_checkpoint
    model = torch.nn.Linear(512, 512)
    step = 0
    print("ready", flush=True)
    while True:
        step += 1
        with torch.no_grad():
            model.weight.fill_(float(step))
        save_checkpoint(sys.argv[1], model, step=step)
    """
)


@pytest.mark.slow
def test_killing_a_process_mid_save_never_corrupts_the_checkpoint(tmp_path):
    root = Path(__file__).resolve().parents[1]
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], cwd=root, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(root)})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model = torch.nn.Linear(512, 512)
        state = load_checkpoint(tmp_path, model)
        assert state is not None and state["step"] >= 1
        assert torch.all(model.weight == float(state["step"]))  # the file is whole and consistent
