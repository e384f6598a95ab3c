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
from .trajectory import Episode, SegmentTokens, TurnRecord


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
    segments: dict[int, SegmentTokens] = field(default_factory=dict)
    turns: list[TurnRecord] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)
    context: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _record_segments(episode: _Open, info: dict[str, Any]) -> None:
    """Store the token ids of the segments this reset/step added."""
    ids_by_segment = info["segment_ids"]
    for seg in info["new_segments"]:
        sid = int(seg["id"])
        episode.segments[sid] = SegmentTokens(id=sid, kind=seg["kind"], turn=int(seg["turn"]), ids=[int(t) for t in ids_by_segment[sid]])


def _observe(episode: _Open, obs: Any, info: dict[str, Any]) -> None:
    """Remember what the policy will condition on next."""
    episode.visible = [int(i) for i in info["visible_ids"]]
    ids = info.get("input_ids", obs)
    episode.context = [int(t) for t in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    episode.info = info


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
        _record_segments(episode, info)
        _observe(episode, obs, info)
        slots[slot] = episode
        # A new episode shares nothing worth trusting with the slot's last one.
        policy.reset_cache(slot)

    for slot in range(len(envs)):
        start_next(slot)
    while any(s is not None for s in slots):
        live = [i for i, s in enumerate(slots) if s is not None]
        contexts = [slots[i].context for i in live]  # type: ignore[union-attr]
        prefix = [slots[i].info.get("prefix_len") for i in live]  # type: ignore[union-attr]
        generations: list[Generation] = policy.generate(contexts, prefix_lens=prefix, keys=live)
        for slot, gen in zip(live, generations):
            episode = slots[slot]
            assert episode is not None
            visible_before = episode.visible
            stats.turns += 1
            stats.generated_tokens += len(gen.ids)
            stats.context_tokens += len(episode.context)
            stats.reused_tokens += gen.reused
            obs, reward, terminated, truncated, info = envs[slot].step(gen.ids)
            _record_segments(episode, info)
            action = next(s for s in info["new_segments"] if s["kind"] == "action")
            action_ids = episode.segments[int(action["id"])].ids
            if action_ids != gen.ids:
                raise RuntimeError(
                    "the environment did not keep the generated ids verbatim as the action segment "
                    f"({len(gen.ids)} generated, {len(action_ids)} stored); the recorded log-probs would not line up"
                )
            episode.turns.append(TurnRecord(action_id=int(action["id"]), visible_ids=list(visible_before), logprobs=list(gen.logprobs)))
            episode.rewards.append(float(reward))
            if terminated or truncated:
                metrics = dict(info.get("metrics", {}))
                metrics["turn_rewards"] = list(episode.rewards)
                metrics["truncated"] = bool(truncated and not terminated)
                done[episode.index] = Episode(
                    segments=[episode.segments[k] for k in sorted(episode.segments)],
                    turns=episode.turns,
                    reward=float(sum(episode.rewards)),
                    metrics=metrics,
                )
                stats.episodes += 1
                if progress is not None:
                    progress.update(1)
                start_next(slot)
            else:
                _observe(episode, obs, info)
    policy.reset_cache()
    stats.seconds = time.perf_counter() - start
    return [done[i] for i in range(len(seeds))], stats
