"""Batched rollout: a batch of token-level environments stepped together by one :class:`LMPolicy`.

Every slot of the batch is a ``mem1_gym.wrappers.TokenizedEnv``. At each
round the policy generates one turn for every live slot in a single batched,
left-padded generation (reusing each slot's KV cache for the prefix its
context shares with the previous turn); every env is then stepped with the
exact generated ids. A slot whose episode ends is reset with the next task
seed straight away, so the batch stays full until the seeds run out.

Each finished episode becomes a :class:`mem1_agent.trajectory.Episode`: the
token ids of every segment once, and per turn which segments were visible
when it was generated and the log-probs recorded at generation time — all
the stitched-trajectory trainer needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .policy import Generation, LMPolicy
from .trajectory import Episode, EpisodeBuilder


@dataclass
class RolloutStats:
    """Throughput of one :func:`rollout` call.

    Attributes:
        episodes: finished episodes.
        turns: agent turns generated.
        generated_tokens: tokens sampled.
        context_tokens: context tokens the policy conditioned on (summed over turns).
        reused_tokens: context tokens served from the KV cache instead of recomputed.
        seconds: wall-clock time.
    """

    episodes: int = 0
    turns: int = 0
    generated_tokens: int = 0
    context_tokens: int = 0
    reused_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second."""
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Open:
    """An episode in progress in one slot."""

    index: int
    builder: EpisodeBuilder = field(default_factory=EpisodeBuilder)
    rewards: list[float] = field(default_factory=list)
    context: list[int] = field(default_factory=list)
    prefix_len: int | None = None


def _context(obs: Any, info: dict[str, Any]) -> list[int]:
    """The unpadded context ids of a ``TokenizedEnv`` observation."""
    ids = info.get("input_ids")
    if ids is None:
        ids = obs["input_ids"][: int(obs["attention_mask"].sum())] if isinstance(obs, dict) else obs
    return [int(t) for t in (ids.tolist() if hasattr(ids, "tolist") else ids)]


def rollout(
    envs: Sequence[Any],
    policy: LMPolicy,
    seeds: Sequence[int],
    progress: Any = None,
) -> tuple[list[Episode], RolloutStats]:
    """Play one episode per seed, ``len(envs)`` at a time, batched.

    Args:
        envs: token-level environments (``TokenizedEnv``), one per batch slot.
        policy: the policy that generates every turn.
        seeds: one ``reset`` seed per episode (repeat a seed G times for GRPO groups).
        progress: a tqdm bar (or None); advanced by one per finished episode.

    Returns:
        the episodes in the order of ``seeds``, and throughput statistics.
    """
    if not envs:
        raise ValueError("rollout needs at least one environment")
    stats = RolloutStats()
    start = time.perf_counter()
    done: dict[int, Episode] = {}
    queue = list(enumerate(seeds))
    slots: list[_Open | None] = [None] * len(envs)

    def start_next(slot: int) -> None:
        if not queue:
            slots[slot] = None
            return
        index, seed = queue.pop(0)
        obs, info = envs[slot].reset(seed=int(seed))
        episode = _Open(index=index)
        episode.builder.reset(info)
        episode.context, episode.prefix_len = _context(obs, info), info.get("prefix_len")
        slots[slot] = episode
        # A new episode shares nothing worth trusting with the slot's last one.
        policy.reset_cache(slot)

    for slot in range(len(envs)):
        start_next(slot)
    while any(s is not None for s in slots):
        live = [i for i, s in enumerate(slots) if s is not None]
        contexts = [slots[i].context for i in live]  # type: ignore[union-attr]
        prefix = [slots[i].prefix_len for i in live]  # type: ignore[union-attr]
        generations: list[Generation] = policy.generate(contexts, prefix_lens=prefix, keys=live)
        for slot, gen in zip(live, generations):
            episode = slots[slot]
            assert episode is not None
            stats.turns += 1
            stats.generated_tokens += len(gen.ids)
            stats.context_tokens += len(episode.context)
            stats.reused_tokens += gen.reused
            obs, reward, terminated, truncated, info = envs[slot].step(gen.ids)
            episode.builder.step(info, reward=float(reward), logprobs=gen.logprobs)
            action_ids = episode.builder.segments[episode.builder.turns[-1].action_id].ids
            if list(action_ids) != gen.ids:
                raise RuntimeError(
                    "the environment did not keep the generated ids verbatim as the action segment "
                    f"({len(gen.ids)} generated, {len(action_ids)} stored); the recorded log-probs would not line up"
                )
            episode.rewards.append(float(reward))
            if terminated or truncated:
                if not episode.builder.metrics:
                    # Truncated by the token wrapper (context over max_length): the text env is still open.
                    episode.builder.metrics = dict(envs[slot].unwrapped.metrics())
                episode.builder.metrics["turn_rewards"] = list(episode.rewards)
                episode.builder.metrics["truncation_reason"] = info.get("truncation_reason")
                done[episode.index] = episode.builder.build()
                stats.episodes += 1
                if progress is not None:
                    progress.update(1)
                start_next(slot)
            else:
                episode.context, episode.prefix_len = _context(obs, info), info.get("prefix_len")
    policy.reset_cache()
    stats.seconds = time.perf_counter() - start
    return [done[i] for i in range(len(seeds))], stats
