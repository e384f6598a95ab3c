"""Statistics over several processes: PPO's advantage whitening and the trainer's logged scalars.

Two gloo processes are spawned in-test (``torch.distributed``, CPU), each holding half a batch.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mem1_agent.ppo import masked_whiten

# Two processes' rows of advantages (uneven token counts: row 1 of process 1 is short).
X = torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 0.0, -1.0, 2.0], [7.0, -3.0, 0.0, 0.0], [0.25, 9.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0]])


def _sum_over_group(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t


def _whiten_half(rank: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        rows = slice(2 * rank, 2 * rank + 2)
        torch.save(masked_whiten(X[rows], MASK[rows], all_reduce=_sum_over_group), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_whitening_over_two_processes_equals_whitening_the_concatenation(tmp_path):
    mp.spawn(_whiten_half, args=(str(tmp_path / "rendezvous"), str(tmp_path / "w")), nprocs=2)
    halves = torch.cat([torch.load(tmp_path / f"w.{r}") for r in range(2)])
    whole = masked_whiten(X, MASK)
    assert torch.allclose(halves, whole, atol=1e-6)
    # Each process alone would centre on its own mean: visibly different.
    assert not torch.allclose(masked_whiten(X[:2], MASK[:2]), whole[:2], atol=1e-2)


def test_scalars_combine_over_processes_by_kind():
    from mem1_agent.train import combine_scalars  # (not at the top: spawned processes import this module)

    ranks = [
        {"reward": 1.0, "episodes": 4.0, "action_tokens": 30.0, "logp_gap": 0.01, "clipfrac": 0.2, "only_here": 1.0},
        {"reward": 0.0, "episodes": 4.0, "action_tokens": 50.0, "logp_gap": 0.04, "clipfrac": 0.1},
    ]
    assert combine_scalars(ranks) == pytest.approx(
        {"reward": 0.5, "episodes": 8.0, "action_tokens": 80.0, "logp_gap": 0.04, "clipfrac": 0.15}
    )
