"""Fixtures shared across test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: tiny models gain nothing from more, and on a
    shared CPU OpenMP spin-waiting makes them an order of magnitude slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sb3_logs_in_tmp(tmp_path, monkeypatch):
    """stable-baselines3's ``learn()`` creates ``/tmp/SB3-<date>`` for its default logger unless
    ``SB3_LOGDIR`` is set; point it at the test's own temp dir so the suite leaves nothing behind.
    Modules that train with SB3 use it with ``pytestmark = pytest.mark.usefixtures("sb3_logs_in_tmp")``."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3-logs"))
