"""Batched rollout: a batch of token-level environments stepped together by one rollout engine.

Every slot of the batch is a ``mem1_gym.wrappers.TokenizedEnv``. The engine
(:class:`~mem1_agent.engine.RolloutEngine`; :class:`~mem1_agent.policy.LMPolicy`
for a Hugging Face model) generates every turn from the slot's context; the env
is then stepped with the exact generated ids. Two schedules:

* **continuous** (the default): as soon as a slot's turn ends its env is
  stepped and its next turn submitted, and a slot whose episode ends is reset
  with the next task seed straight away; the engine admits the new turn into the
  running batch while the other rows keep decoding, so no slot waits for the
  slowest row;
* **static**: every live slot generates one turn per round, and the round lasts
  until its slowest row finishes (the reference the continuous schedule replaces;
  ``SamplingConfig.continuous_batching=False``).

Which slot plays which episode depends on the schedule; with interchangeable
slots (identical envs, as ``make_envs`` builds them) and greedy decoding both
schedules give the same episodes (tested). Episodes come back in the order of
the seeds either way.

Each finished episode becomes a :class:`mem1_agent.trajectory.Episode`: the
token ids of every segment once, and per turn which segments were visible
when it was generated and the log-probs recorded at generation time — all
the stitched-trajectory trainer needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .engine import Generation, RolloutEngine
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
        steps: engine steps (one decode forward each, plus a prefill when turns were admitted).
        seconds: wall-clock time.
    """

    episodes: int = 0
    turns: int = 0
    generated_tokens: int = 0
    context_tokens: int = 0
    reused_tokens: int = 0
    steps: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second."""
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_step(self) -> float:
        """Generated tokens per engine step: how full the running batch was kept."""
        return self.generated_tokens / self.steps if self.steps else 0.0


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
    policy: RolloutEngine,
    seeds: Sequence[int],
    progress: Any = None,
    continuous: bool | None = None,
) -> tuple[list[Episode], RolloutStats]:
    """Play one episode per seed, ``len(envs)`` at a time, batched.

    Args:
        envs: token-level environments (``TokenizedEnv``), one per batch slot.
        policy: the engine that generates every turn (an :class:`~mem1_agent.policy.LMPolicy`).
        seeds: one ``reset`` seed per episode (repeat a seed G times for GRPO groups).
        progress: a tqdm bar (or None); advanced by one per finished episode.
        continuous: continuous (True) or static (False) batching; None takes the policy's
            ``sampling.continuous_batching`` (True when it has none).

    Returns:
        the episodes in the order of ``seeds``, and throughput statistics.
    """
    if not envs:
        raise ValueError("rollout needs at least one environment")
    if continuous is None:
        continuous = bool(getattr(getattr(policy, "sampling", None), "continuous_batching", True))
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

    def record(slot: int, gen: Generation) -> None:
        """Step the slot's env with a finished turn; start its next episode when this one ends."""
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

    for slot in range(len(envs)):
        start_next(slot)
    if continuous:
        owner: dict[int, int] = {}

        def submit(slot: int) -> None:
            episode = slots[slot]
            if episode is not None:
                owner[policy.submit(episode.context, key=slot, prefix_len=episode.prefix_len)] = slot

        for slot in range(len(envs)):
            submit(slot)
        while policy.pending:
            stats.steps += 1
            for rid, gen in policy.step():
                slot = owner.pop(rid)
                record(slot, gen)
                submit(slot)
    else:
        while any(s is not None for s in slots):
            live = [i for i, s in enumerate(slots) if s is not None]
            rids = {policy.submit(slots[i].context, key=i, prefix_len=slots[i].prefix_len): i for i in live}  # type: ignore[union-attr]
            finished: dict[int, Generation] = {}
            while policy.pending:
                stats.steps += 1
                finished.update(policy.step())
            for rid, slot in rids.items():
                record(slot, finished[rid])
    policy.reset_cache()
    stats.seconds = time.perf_counter() - start
    return [done[i] for i in range(len(seeds))], stats
