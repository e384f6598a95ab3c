"""torch's thread count: free cores by default, OMP_NUM_THREADS and --threads win."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.errors import BadArgument
from mem1_agent.threads import apply_threads, default_threads


@pytest.mark.parametrize(
    "cores, load, expected",
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 15.0, 1), (8, 3.2, 5), (8, 0.0, 8), (1, 0.0, 1)],
)
def test_default_takes_the_free_cores(cores, load, expected):
    assert default_threads(cores, load) == expected


def test_apply_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert apply_threads(None) == 2  # an explicit OMP_NUM_THREADS means "leave it"
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr("mem1_agent.threads.default_threads", lambda: 1)
        assert apply_threads(None) == 1
        with pytest.raises(BadArgument, match="--threads must be at least 1, got 0"):
            apply_threads(0)
    finally:
        torch.set_num_threads(before)
