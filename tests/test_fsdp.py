"""FSDP2 on 2 CPU (gloo) processes: rollout on sharded weights, sharded checkpoints, exact resume.

accelerate's FSDP plugin only shards on GPU process groups, so this drives ``fully_shard`` (what the
plugin applies at ``prepare``) directly; the trainer-level run needs a GPU (see README, FSDP).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fsdp2_sharded_rollout_checkpoint_and_resume_on_two_cpu_processes(tmp_path):
    with socket.socket() as sock:  # a free port: other runs on this machine may hold the default one
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "tests" / "fsdp_worker.py"), str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.count(": OK") == 2
    # The sharded checkpoint names its layout: one process cannot resume it, and says why.
    from mem1_agent.checkpoint import CheckpointError, load_checkpoint
    from mem1_agent.models import load_policy

    policy, _ = load_policy("tiny")
    with pytest.raises(CheckpointError, match="sharded over 2 processes; resume it with 2 processes"):
        load_checkpoint(tmp_path / "run", policy)
