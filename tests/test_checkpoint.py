"""Checkpoints: round trip, atomicity (crash, kill mid-save), no pickles, hashes, stale temp files, full disk."""

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

import errno
import json
import pickle

from mem1_agent import checkpoint as ckpt
from mem1_agent.checkpoint import CHECKPOINT_FILE, CheckpointError, clean_stale, load_checkpoint, save_checkpoint


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
    # No temp file left behind: the manifest and the one snapshot folder it names.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([CHECKPOINT_FILE, json.loads((tmp_path / CHECKPOINT_FILE).read_text())["snapshot"]])
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
    while True:
        step += 1
        with torch.no_grad():
            model.weight.fill_(float(step))
        save_checkpoint(sys.argv[1], model, step=step)
        if step == 1:  # killed from now on, mid-save of a later step (a loaded machine may need > 0.3 s per save)
            print("ready", flush=True)
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
        # Whatever the kill left (a temp folder, an unreferenced snapshot) goes on the next start.
        clean_stale(tmp_path)
        current = json.loads((tmp_path / CHECKPOINT_FILE).read_text())["snapshot"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, current])


class _Exploit:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["checkpoint.pt", "reference.pt"])
def test_a_crafted_pickle_in_the_output_dir_is_refused_not_executed(tmp_path, name):
    marker = tmp_path / "pwned"
    (tmp_path / name).write_bytes(pickle.dumps({"step": 1, "x": _Exploit(marker)}))
    model, opt, sched = _setup(0)
    with pytest.raises(CheckpointError, match=f"{name}.*pickle.*not loaded"):
        load_checkpoint(tmp_path, model, opt, sched)
    assert not marker.exists()


def test_a_manifest_naming_a_pickle_or_unlisted_files_is_refused(tmp_path):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched)
    manifest = json.loads((tmp_path / CHECKPOINT_FILE).read_text())
    snapshot = tmp_path / manifest["snapshot"]
    (snapshot / "evil.pt").write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned")))
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path, model, opt, sched)
    (snapshot / "evil.pt").unlink()
    manifest["files"]["evil.pt"] = {"sha256": "0", "bytes": 1}
    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="only .safetensors and .json"):
        load_checkpoint(tmp_path, model, opt, sched)
    assert not (tmp_path / "pwned").exists()


def test_the_checkpoint_is_safetensors_and_json_only(tmp_path):
    model, opt, sched = _setup(0)
    _train_step(model, opt, sched)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched, generator=torch.Generator())
    snapshot = tmp_path / json.loads((tmp_path / CHECKPOINT_FILE).read_text())["snapshot"]
    assert sorted(p.name for p in snapshot.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    state = json.loads((snapshot / "state.json").read_text())
    # Optimizer hyper-parameters and the Python RNG state are plain JSON; moments are named tensors.
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-3)
    assert state["rng"][0]["rng"]["python"]["__tuple__"][0] == 3
    from safetensors.torch import load_file

    moments = load_file(str(snapshot / "state.safetensors"))
    (exp_avg,) = [k for k in moments if k.endswith("exp_avg")][:1]
    assert torch.equal(moments[exp_avg], opt.state_dict()["state"][0]["exp_avg"])


@pytest.mark.parametrize("fname", ["model.safetensors", "state.json", "state.safetensors"])
def test_flipped_bytes_are_detected_and_name_the_file(tmp_path, fname):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched)
    file = tmp_path / json.loads((tmp_path / CHECKPOINT_FILE).read_text())["snapshot"] / fname
    data = bytearray(file.read_bytes())
    data[len(data) - 3] ^= 0x01  # inside the tensor data / the JSON text
    file.write_bytes(bytes(data))
    fresh, fopt, fsched = _setup(1)
    before = [p.detach().clone() for p in fresh.parameters()]
    with pytest.raises(CheckpointError, match=f"{fname} is damaged"):
        load_checkpoint(tmp_path, fresh, fopt, fsched)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))  # nothing half-loaded


def test_stale_temp_files_are_cleaned_and_other_files_kept(tmp_path):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched)
    current = json.loads((tmp_path / CHECKPOINT_FILE).read_text())["snapshot"]
    folders = [".checkpoint-0123456789ab.tmp", "checkpoint-ba9876543210", "reference-ba9876543210"]
    files = [".checkpoint.json.tmp-4242", ".checkpoint.pt.tmp-17"]
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"partial")
    for name in files:
        (tmp_path / name).write_text("x")
    leftovers = folders + files
    (tmp_path / "notes.txt").write_text("mine")
    assert sorted(clean_stale(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, current, "notes.txt"])
    assert load_checkpoint(tmp_path, model, opt, sched)["step"] == 1


@pytest.mark.parametrize("where", ["writer", "free_space"])
def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path, model, step=1, optimizer=opt, scheduler=sched)
    saved = [p.detach().clone() for p in model.parameters()]
    _train_step(model, opt, sched)
    if where == "writer":
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ckpt, "save_file", full)
    else:
        monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: shutil_usage(0))
    with pytest.raises(CheckpointError, match=rf"no space left on {tmp_path} \(needed \d+ bytes\)"):
        save_checkpoint(tmp_path, model, step=2, optimizer=opt, scheduler=sched)
    monkeypatch.undo()
    assert len(list(tmp_path.iterdir())) == 2  # manifest + previous snapshot, no temp left
    fresh, fopt, fsched = _setup(3)
    assert load_checkpoint(tmp_path, fresh, fopt, fsched)["step"] == 1
    assert all(torch.equal(a, b) for a, b in zip(saved, fresh.parameters()))


def shutil_usage(free):
    import shutil

    return shutil._ntuple_diskusage(10**9, 10**9 - free, free)


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path):
    from mem1_agent.models import tiny_model

    lm = tiny_model("llama", seed=0)
    save_checkpoint(tmp_path, lm, step=1)
    other = tiny_model("llama", seed=5)
    load_checkpoint(tmp_path, other)
    assert other.lm_head.weight.data_ptr() == other.model.embed_tokens.weight.data_ptr()
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), other.state_dict().values()))
