"""Stitched masked trajectories: a whole multi-turn episode in one forward pass.

At rollout time turn ``t`` is generated from a context made of the segments
the memory policy left visible, laid out contiguously (positions ``0..L-1``,
as any Hugging Face model expects), followed by the generated action. Under
``full`` every context is a prefix of the next one; under ``mem1`` and
``window:k`` older segments disappear and the kept ones *move*: the last
action, generated right after the previous observation, sits right after the
prompt in the next turn's context. With rotary position embeddings a token's
hidden state depends on the positions of everything it attends to, so a
single copy of a moved segment cannot reproduce both contexts.

The stitcher therefore builds a **prefix tree** of the contexts. A node is a
segment *together with the exact sequence of segments before it* in some
turn's context; every node is emitted once, so identical context prefixes are
shared and computed once:

* tokens of a node attend to every token of its ancestors and causally
  within the node (a 2D attention mask), and carry the position ids they had
  at rollout (the ancestors' total length plus their index in the segment);
* the node where action ``t`` was generated (its *generation copy*) carries
  the loss; copies of an action that only serve as memory for later turns
  carry none;
* the logits of action token ``j`` are read at the token before it in its
  rollout context: token ``j-1`` of the same node, or, for ``j = 0``, the
  last token of the parent node (which need not be adjacent in the row).

Under ``full`` the tree is a single path and every segment appears exactly
once. Under ``mem1`` actions 1..T-2 appear twice (generated after the
previous observation, then remembered right after the prompt; action 0 was
generated there already and the last action is never remembered) and
everything else once; under ``window:k`` an action or observation appears
once per distinct context prefix it had. The final observation is in no
context and is not emitted. This departs from
"every segment appears once" in DESIGN.md §8, which no stitched sequence can
satisfy exactly under RoPE when segments move; sharing whole prefixes (rather
than keying copies by (segment, offset) alone) is also what keeps the result
exact when two different prefixes happen to have the same length.

The invariant (tested in ``tests/test_consistency.py`` and checked by
``mem1 check-consistency``): log-probs of the action tokens from one
stitched forward equal the rollout-time log-probs, for every supported
attention implementation. Several episodes pack into one row with
block-diagonal masks.

Masks are never built for a whole iteration. The stitcher describes the
visibility in O(S) numbers: every tree node gets its pre-order number ``tin`` and
the largest pre-order number in its subtree ``tout`` (packed episodes and padding
tokens get disjoint ranges), and token ``q`` may attend to token ``k`` exactly when
``k <= q`` and ``k``'s node is ``q``'s node or one of its ancestors:
``tin[k] <= tin[q] and tout[q] <= tout[k]``. From that (transformers passes a
user 4D mask through as is):

* ``eager`` *adds* the mask to the scores and ``sdpa`` treats a float mask as
  additive too (a 0/1 float mask would be silently wrong for both), so both get
  a dense additive float (B, 1, S, S) mask, 0 where allowed and the dtype's most
  negative value elsewhere, built for the batch at hand — the trainers stitch one
  micro-batch at a time;
* ``flex_attention`` gets a block-sparse ``BlockMask`` built block row by block row
  from ``tin``/``tout`` (never an S×S tensor): a (query block, key block) pair is
  skipped when no token of one sees a token of the other, and computed without a
  mask when all do.

Flash-attention kernels take only padding information and are refused. The
dense boolean :attr:`StitchedBatch.visibility` is computed on demand, by walking
the tree, for tests and inspection only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch

from .models import as_policy, check_attn_implementation


@dataclass(frozen=True)
class SegmentTokens:
    """A segment's token ids, tokenized once (token-in/token-out).

    Attributes:
        id: segment id in the episode transcript (0 is the prompt).
        kind: ``prompt``, ``action`` or ``observation``.
        turn: the turn it belongs to (-1 for the prompt).
        ids: its token ids; for an action, exactly the ids the policy generated.
    """

    id: int
    kind: str
    turn: int
    ids: tuple[int, ...]


@dataclass
class TurnRecord:
    """One generation: what the policy saw and what it produced.

    Attributes:
        action_id: id of the generated action segment.
        visible_ids: ids of the segments in context, in context order (the env's ``visible_ids``).
        logprobs: rollout-time log-prob of each action token, or ``None``.
    """

    action_id: int
    visible_ids: tuple[int, ...]
    logprobs: list[float] | None = None


@dataclass
class Episode:
    """A tokenized episode: its segments, its turns, and its outcome."""

    segments: dict[int, SegmentTokens]
    turns: list[TurnRecord]
    reward: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)

    def context_ids(self, t: int) -> list[int]:
        """The rollout context of turn ``t``: visible segments' ids, contiguous."""
        out: list[int] = []
        for sid in self.turns[t].visible_ids:
            out.extend(self.segments[sid].ids)
        return out

    def action_ids(self, t: int) -> list[int]:
        """The ids generated at turn ``t``."""
        return list(self.segments[self.turns[t].action_id].ids)

    def validate(self) -> None:
        """Raise ``ValueError`` if turns refer to missing segments or see their own action."""
        for t, turn in enumerate(self.turns):
            missing = [s for s in (*turn.visible_ids, turn.action_id) if s not in self.segments]
            if missing:
                raise ValueError(f"turn {t} refers to unknown segment ids {missing}")
            if turn.action_id in turn.visible_ids:
                raise ValueError(f"turn {t}: action segment {turn.action_id} is in its own context")
            if self.segments[turn.action_id].kind != "action":
                raise ValueError(f"turn {t}: segment {turn.action_id} is a {self.segments[turn.action_id].kind}, not an action")
            if not any(len(self.segments[s].ids) for s in turn.visible_ids):
                raise ValueError(f"turn {t} has an empty context: the first action token has nothing to condition on")
            n = len(self.segments[turn.action_id].ids)
            if turn.logprobs is not None and len(turn.logprobs) != n:
                raise ValueError(f"turn {t}: {len(turn.logprobs)} log-probs for {n} action tokens")

    @classmethod
    def from_env_infos(
        cls,
        reset_info: Mapping[str, Any],
        step_infos: Sequence[Mapping[str, Any]],
        rewards: Sequence[float] | None = None,
        logprobs: Sequence[Sequence[float] | None] | None = None,
    ) -> "Episode":
        """Build an episode from a token-level env's ``reset`` info and its ``step`` infos.

        Each info must carry ``new_segments`` (segment dicts), ``segment_ids``
        (``{segment_id: ids}`` for the new segments) and ``visible_ids``.
        """
        builder = EpisodeBuilder()
        builder.reset(reset_info)
        for i, info in enumerate(step_infos):
            builder.step(
                info,
                reward=0.0 if rewards is None else float(rewards[i]),
                logprobs=None if logprobs is None else logprobs[i],
            )
        return builder.build()


class EpisodeBuilder:
    """Fills an :class:`Episode` as a rollout steps a token-level environment.

    Usage::

        b = EpisodeBuilder(); obs, info = env.reset(seed=s); b.reset(info)
        while not done:
            ids, lps = generate(...)
            obs, r, term, trunc, info = env.step(ids); b.step(info, r, lps)
        episode = b.build()

    Segments may also be added directly with :meth:`add_segment` and turns with
    :meth:`add_turn`, for data that does not come from an env.
    """

    def __init__(self) -> None:
        self.segments: dict[int, SegmentTokens] = {}
        self.turns: list[TurnRecord] = []
        self.reward = 0.0
        self.metrics: dict[str, Any] = {}
        self._visible: tuple[int, ...] = ()

    def add_segment(self, id: int, kind: str, turn: int, ids: Iterable[int]) -> None:
        """Record a segment's ids (once; a segment never changes)."""
        self.segments[int(id)] = SegmentTokens(int(id), str(kind), int(turn), tuple(int(i) for i in ids))

    def add_turn(self, action_id: int, visible_ids: Iterable[int], logprobs: Sequence[float] | None = None) -> None:
        """Record that action ``action_id`` was generated from ``visible_ids``."""
        self.turns.append(TurnRecord(int(action_id), tuple(int(v) for v in visible_ids), None if logprobs is None else [float(x) for x in logprobs]))

    def _add_from_info(self, info: Mapping[str, Any]) -> list[dict]:
        new = list(info.get("new_segments", []))
        seg_ids = info.get("segment_ids")
        if seg_ids is None:
            raise ValueError("info has no 'segment_ids': wrap the env in mem1_gym.wrappers.TokenizedEnv")
        for seg in new:
            sid = seg["id"]
            ids = seg_ids.get(sid, seg_ids.get(str(sid)))
            if ids is None:
                raise ValueError(f"info['segment_ids'] lacks the ids of new segment {sid}")
            self.add_segment(sid, seg["kind"], seg["turn"], ids)
        return new

    def reset(self, info: Mapping[str, Any]) -> None:
        """Start from the ``reset`` info (the prompt segment)."""
        self.__init__()
        self._add_from_info(info)
        self._visible = tuple(info["visible_ids"])

    def step(self, info: Mapping[str, Any], reward: float = 0.0, logprobs: Sequence[float] | None = None) -> None:
        """Record a ``step``: the action just taken (from the previous visible set) and the new observation."""
        new = self._add_from_info(info)
        actions = [s["id"] for s in new if s["kind"] == "action"]
        if len(actions) != 1:
            raise ValueError(f"a step must add exactly one action segment, got {len(actions)}")
        self.add_turn(actions[0], self._visible, logprobs)
        self._visible = tuple(info["visible_ids"])
        self.reward += float(reward)
        if "metrics" in info:
            self.metrics = dict(info["metrics"])

    def build(self) -> Episode:
        """The finished, validated episode."""
        ep = Episode(dict(self.segments), list(self.turns), self.reward, dict(self.metrics))
        ep.validate()
        return ep


# -- the prefix tree of one episode ---------------------------------------------


@dataclass
class _Node:
    seg: int
    parent: int  # node index, -1 for a root
    start: int  # first column inside the episode block
    length: int
    pos0: int  # position id of the first token


@dataclass
class _Block:
    """One episode laid out as a prefix tree (before packing)."""

    ids: list[int]
    positions: list[int]
    nodes: list[_Node]
    loss_cols: list[int]  # generation-copy action tokens
    logit_cols: list[int]  # where each of those tokens is predicted
    action_index: list[tuple[int, int]]  # (turn, token)
    rollout_logprobs: list[float]
    naive_tokens: int  # tokens a per-turn recomputation would process

    def tree_ranges(self) -> tuple[list[int], list[int]]:
        """Per token, its node's pre-order number and the largest one in the node's subtree."""
        children: list[list[int]] = [[] for _ in self.nodes]
        roots = []
        for i, node in enumerate(self.nodes):
            (children[node.parent] if node.parent >= 0 else roots).append(i)
        tin, tout = [0] * len(self.nodes), [0] * len(self.nodes)
        counter = 0
        stack = [(r, False) for r in reversed(roots)]
        while stack:
            i, closing = stack.pop()
            if closing:
                tout[i] = counter - 1
                continue
            tin[i] = counter
            counter += 1
            stack.append((i, True))
            stack.extend((c, False) for c in reversed(children[i]))
        tok_in, tok_out = [0] * len(self.ids), [0] * len(self.ids)
        for i, node in enumerate(self.nodes):
            tok_in[node.start : node.start + node.length] = [tin[i]] * node.length
            tok_out[node.start : node.start + node.length] = [tout[i]] * node.length
        return tok_in, tok_out


def _build_block(ep: Episode) -> _Block:
    ep.validate()
    nodes: list[_Node] = []
    index: dict[tuple[int, int], int] = {}
    ids: list[int] = []
    positions: list[int] = []

    def child(parent: int, seg: int, pos0: int) -> int:
        key = (parent, seg)
        if key not in index:
            toks = ep.segments[seg].ids
            index[key] = len(nodes)
            nodes.append(_Node(seg, parent, len(ids), len(toks), pos0))
            ids.extend(toks)
            positions.extend(range(pos0, pos0 + len(toks)))
        return index[key]

    loss_cols: list[int] = []
    logit_cols: list[int] = []
    action_index: list[tuple[int, int]] = []
    lps: list[float] = []
    naive = 0
    for t, turn in enumerate(ep.turns):
        parent, pos = -1, 0
        for sid in turn.visible_ids:
            if not ep.segments[sid].ids:
                continue  # an empty segment occupies no position and changes nothing
            parent = child(parent, sid, pos)
            pos += nodes[parent].length
        n_act = len(ep.segments[turn.action_id].ids)
        naive += pos + n_act
        if n_act == 0:
            continue
        gen = nodes[child(parent, turn.action_id, pos)]
        prev = nodes[parent]
        for j in range(n_act):
            loss_cols.append(gen.start + j)
            logit_cols.append(gen.start + j - 1 if j else prev.start + prev.length - 1)
            action_index.append((t, j))
            lps.append(float("nan") if turn.logprobs is None else turn.logprobs[j])
    return _Block(ids, positions, nodes, loss_cols, logit_cols, action_index, lps, naive)


# -- batches --------------------------------------------------------------------


@dataclass
class StitchedBatch:
    """Episodes stitched into rows, ready for one forward pass.

    Per-token tensors are (B, S). Per-action-token tensors are (N,), in the
    order of ``action_index``.

    Attributes:
        input_ids, position_ids: model inputs.
        tree_in, tree_out: (B, S) the visibility in O(S) (see the module docstring): token ``q``
            may attend to ``k <= q`` iff ``tree_in[k] <= tree_in[q]`` and ``tree_out[q] <= tree_out[k]``.
        attention_mask: the visibility in the form ``attn_implementation`` needs.
        attn_implementation: the implementation the mask was built for.
        loss_mask: (B, S) bool, the generation-copy action tokens.
        token_index: (N, 2) (row, column) of each action token.
        logit_index: (N, 2) (row, column) whose logits predict that token.
        target_ids: (N,) the action tokens.
        action_index: (N, 3) (episode, turn, token-in-action).
        rollout_logprobs: (N,) rollout-time log-probs (NaN where not recorded).
        rewards: (E,) episode rewards.
        placement: per episode (row, first column, length).
        naive_tokens: tokens a per-turn recomputation of the same episodes processes.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    tree_in: torch.Tensor
    tree_out: torch.Tensor
    attention_mask: Any
    attn_implementation: str
    loss_mask: torch.Tensor
    token_index: torch.Tensor
    logit_index: torch.Tensor
    target_ids: torch.Tensor
    action_index: torch.Tensor
    rollout_logprobs: torch.Tensor
    rewards: torch.Tensor
    placement: list[tuple[int, int, int]]
    naive_tokens: int
    trees: list[list[tuple[int, int, int]]] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return sum(length for _, _, length in self.placement)

    @property
    def visibility(self) -> torch.Tensor:
        """(B, S, S) bool, ``True`` where query token i may attend key token j (dense; for tests).

        Computed by walking each episode's prefix tree (``trees``: per node its first column,
        length and parent), independently of ``tree_in``/``tree_out`` and of the mask.
        """
        B, S = self.input_ids.shape
        vis = torch.eye(S, dtype=torch.bool).repeat(B, 1, 1)
        for (row, col, _), nodes in zip(self.placement, self.trees):
            for start, length, parent in nodes:
                rows = slice(col + start, col + start + length)
                vis[row, rows, rows] = torch.ones(length, length, dtype=torch.bool).tril()
                while parent >= 0:
                    p_start, p_len, parent = nodes[parent]
                    vis[row, rows, col + p_start : col + p_start + p_len] = True
        return vis.to(self.input_ids.device)

    def to(self, device: torch.device | str) -> "StitchedBatch":
        """A copy on ``device`` (the mask is rebuilt there for flex attention)."""
        moved = self._moved(device)
        if self.attn_implementation == "flex_attention" and moved.tree_in.device != self.tree_in.device:
            moved.attention_mask = block_mask(moved.tree_in, moved.tree_out)
        return moved

    def _moved(self, device: torch.device | str) -> "StitchedBatch":
        return StitchedBatch(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})

    def at_logits(self, per_position: torch.Tensor) -> torch.Tensor:
        """Gather a (B, S, ...) tensor at the positions that predict each action token -> (N, ...)."""
        return per_position[self.logit_index[:, 0], self.logit_index[:, 1]]

    def per_turn(self, values: torch.Tensor, n_episodes: int | None = None) -> list[list[torch.Tensor]]:
        """Split an (N,) per-action-token tensor into ``[episode][turn] -> (tokens,)``."""
        n_ep = n_episodes if n_episodes is not None else len(self.placement)
        out: list[list[list[int]]] = [[] for _ in range(n_ep)]
        for k, (e, t, _) in enumerate(self.action_index.tolist()):
            while len(out[e]) <= t:
                out[e].append([])
            out[e][t].append(k)
        return [[values[torch.tensor(ks, dtype=torch.long, device=values.device)] for ks in turns] for turns in out]


def attention_mask_for(visibility: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> Any:
    """Express a dense (B, S, S) boolean visibility in the mask form an attention implementation needs.

    * ``eager`` and ``sdpa``: additive float (B, 1, S, S) in ``dtype``: 0 where
      allowed, ``finfo(dtype).min`` elsewhere. (``eager`` adds the mask to the
      scores; a boolean mask would be added as 0/1 and mask nothing.)
    * ``flex_attention``: a ``BlockMask`` whose ``mask_mod`` reads the visibility.

    :func:`stitch` does not use it: it builds masks from the O(S) tree description
    (:func:`tree_attention_mask`), without a dense boolean visibility.
    """
    check_attn_implementation(attn_implementation)
    if attn_implementation == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        vis = visibility

        def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
            return vis[b, q, kv]

        b, s, _ = vis.shape
        return create_block_mask(mask_mod, b, None, s, s, device=str(vis.device))
    return _additive(visibility, dtype).unsqueeze(1)


def _additive(visibility: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(visibility.shape, dtype=dtype, device=visibility.device)
    return mask.masked_fill_(~visibility, torch.finfo(dtype).min)


def tree_visibility(tree_in: torch.Tensor, tree_out: torch.Tensor, queries: slice | None = None) -> torch.Tensor:
    """Dense visibility of the query rows ``queries`` (all by default) from the tree ranges: (B, Q, S) bool."""
    S = tree_in.shape[1]
    queries = queries or slice(0, S)
    q = torch.arange(S, device=tree_in.device)[queries]
    k = torch.arange(S, device=tree_in.device)
    vis = tree_in[:, None, :] <= tree_in[:, queries, None]
    vis &= k[None, None, :] <= q[None, :, None]
    vis &= tree_out[:, queries, None] <= tree_out[:, None, :]
    return vis


def tree_mask_mod(tree_in: torch.Tensor, tree_out: torch.Tensor) -> Any:
    """The visibility as a flex-attention ``mask_mod`` reading the O(S) tree ranges."""

    def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return (kv <= q) & (tree_in[b, kv] <= tree_in[b, q]) & (tree_out[b, q] <= tree_out[b, kv])

    return mask_mod


def block_mask(tree_in: torch.Tensor, tree_out: torch.Tensor, block_size: int = 128) -> Any:
    """A flex-attention ``BlockMask`` of the stitched visibility, built one query block at a time.

    Memory stays O(B * block_size * S) while building (never S×S): for each query block
    the key blocks with some visible pair are listed, those whose pairs are all visible
    as full blocks (no ``mask_mod`` call inside them), the rest as partial ones.
    """
    from torch.nn.attention.flex_attention import BlockMask

    B, S = tree_in.shape
    n = -(-S // block_size)
    device = tree_in.device
    partial_count = torch.zeros(B, 1, n, dtype=torch.int32, device=device)
    partial_index = torch.zeros(B, 1, n, n, dtype=torch.int32, device=device)
    full_count = torch.zeros_like(partial_count)
    full_index = torch.zeros_like(partial_index)
    order = torch.arange(n, device=device)
    for qb in range(n):
        rows = slice(qb * block_size, min(S, (qb + 1) * block_size))
        vis = tree_visibility(tree_in, tree_out, rows)
        vis = torch.nn.functional.pad(vis, (0, n * block_size - S)).view(B, vis.shape[1], n, block_size)
        some = vis.any(dim=3).any(dim=1)  # (B, n key blocks)
        # The padded key columns are False, so a ragged last key block is never "full"; nor is
        # any block of a ragged last query block.
        full = vis.all(dim=3).all(dim=1) if rows.stop - rows.start == block_size else torch.zeros_like(some)
        partial = some & ~full
        for mask, count, index in ((partial, partial_count, partial_index), (full, full_count, full_index)):
            count[:, 0, qb] = mask.sum(dim=1).to(torch.int32)
            # Listed blocks first, in increasing key order (a stable sort of "not listed").
            index[:, 0, qb] = torch.sort((~mask).long() * n + order, dim=1).values.remainder(n).to(torch.int32)
    return BlockMask.from_kv_blocks(
        partial_count, partial_index, full_count, full_index, BLOCK_SIZE=block_size,
        mask_mod=tree_mask_mod(tree_in, tree_out), seq_lengths=(S, S),
    )


def tree_attention_mask(tree_in: torch.Tensor, tree_out: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> Any:
    """The stitched visibility in the form ``attn_implementation`` needs (see the module docstring)."""
    check_attn_implementation(attn_implementation)
    if attn_implementation == "flex_attention":
        return block_mask(tree_in, tree_out)
    return _additive(tree_visibility(tree_in, tree_out), dtype).unsqueeze(1)


def _pack(lengths: list[int], capacity: int, pack: bool) -> list[list[int]]:
    """First-fit decreasing: episode indices per row."""
    if not pack:
        return [[i] for i in range(len(lengths))]
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return rows


def stitch(
    episodes: Sequence[Episode],
    pad_id: int,
    max_len: int | None = None,
    pack: bool = True,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> StitchedBatch:
    """Stitch episodes into one batch (see the module docstring).

    Args:
        episodes: tokenized episodes.
        pad_id: id used for padding (padding tokens attend only to themselves).
        max_len: row length; default the longest stitched episode. An episode
            longer than ``max_len`` raises ``ValueError``.
        pack: put several episodes in a row (first-fit decreasing) when they fit.
        attn_implementation: ``eager``, ``sdpa`` or ``flex_attention``.
        dtype: dtype of the additive float mask (the model's dtype).
        device: where the batch and its mask are built (default CPU).
    """
    check_attn_implementation(attn_implementation)
    if not episodes:
        raise ValueError("stitch() needs at least one episode")
    blocks = [_build_block(ep) for ep in episodes]
    lengths = [len(b.ids) for b in blocks]
    cap = max(lengths) if max_len is None else int(max_len)
    too_long = [i for i, n in enumerate(lengths) if n > cap]
    if too_long:
        raise ValueError(f"episode {too_long[0]} stitches to {lengths[too_long[0]]} tokens, more than max_len={cap}")
    rows = _pack(lengths, cap, pack)
    width = cap if max_len is not None else max(sum(lengths[i] for i in r) for r in rows)
    B = len(rows)
    input_ids = torch.full((B, width), int(pad_id), dtype=torch.long)
    position_ids = torch.zeros((B, width), dtype=torch.long)
    # Padding tokens get singleton ranges after every real node: they see only themselves.
    tree_in = torch.arange(width, dtype=torch.long).repeat(B, 1) + B * width
    tree_out = tree_in.clone()
    offset = 0
    loss_mask = torch.zeros((B, width), dtype=torch.bool)
    placement: list[tuple[int, int, int]] = [(0, 0, 0)] * len(blocks)
    tok_idx: list[tuple[int, int]] = []
    logit_idx: list[tuple[int, int]] = []
    act_idx: list[tuple[int, int, int]] = []
    lps: list[float] = []
    targets: list[int] = []
    for r, members in enumerate(rows):
        col = 0
        for e in sorted(members):
            blk = blocks[e]
            n = len(blk.ids)
            input_ids[r, col : col + n] = torch.tensor(blk.ids, dtype=torch.long)
            position_ids[r, col : col + n] = torch.tensor(blk.positions, dtype=torch.long)
            t_in, t_out = blk.tree_ranges()
            tree_in[r, col : col + n] = torch.tensor(t_in, dtype=torch.long) + offset
            tree_out[r, col : col + n] = torch.tensor(t_out, dtype=torch.long) + offset
            offset += len(blk.nodes)
            placement[e] = (r, col, n)
            for c, lc, (t, j), lp in zip(blk.loss_cols, blk.logit_cols, blk.action_index, blk.rollout_logprobs):
                loss_mask[r, col + c] = True
                tok_idx.append((r, col + c))
                logit_idx.append((r, col + lc))
                act_idx.append((e, t, j))
                lps.append(lp)
                targets.append(blk.ids[c])
            col += n
    # Episode-major order, so per-turn slices are contiguous.
    order = sorted(range(len(act_idx)), key=lambda k: act_idx[k])

    def take(xs: list, dtype_: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor([xs[k] for k in order], dtype=dtype_).reshape(-1, *shape)

    batch = StitchedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        tree_in=tree_in,
        tree_out=tree_out,
        attention_mask=None,
        attn_implementation=attn_implementation,
        loss_mask=loss_mask,
        token_index=take(tok_idx, torch.long, (2,)),
        logit_index=take(logit_idx, torch.long, (2,)),
        target_ids=take(targets, torch.long, ()).reshape(-1),
        action_index=take(act_idx, torch.long, (3,)),
        rollout_logprobs=take(lps, torch.float32, ()).reshape(-1),
        rewards=torch.tensor([ep.reward for ep in episodes], dtype=torch.float32),
        placement=placement,
        naive_tokens=sum(b.naive_tokens for b in blocks),
        trees=[[(node.start, node.length, node.parent) for node in b.nodes] for b in blocks],
    )
    if device is not None:
        batch = batch._moved(device)
    # Built last, on the target device: for flex attention the BlockMask lives where the model runs.
    batch.attention_mask = tree_attention_mask(batch.tree_in, batch.tree_out, attn_implementation, dtype)
    return batch


# -- forward passes -------------------------------------------------------------


def _model_attn(policy: Any) -> str:
    inner = getattr(policy, "module", policy)  # through DDP / accelerate wrappers
    return getattr(inner.config, "_attn_implementation", None) or "eager"


def stitched_forward(
    policy: Any, batch: StitchedBatch, with_entropy: bool = False, with_values: bool = True, entropy_grad: bool = True,
    temperature: float = 1.0,
) -> dict[str, torch.Tensor | None]:
    """One forward over a stitched batch; per-action-token outputs.

    Args:
        policy: a :class:`~mem1_agent.models.PolicyWithValue`, or a plain Hugging Face causal LM (no values).
        batch: from :func:`stitch`, with the mask built for the policy's attention implementation.
        with_entropy: also return the entropy of each token's distribution.
        with_values: compute the values (when the policy has a value head).
        entropy_grad: keep the entropy in the autograd graph (False: computed detached, for logging).
        temperature: score ``logits / temperature``, the distribution a rollout at that sampling
            temperature drew from and recorded (0, greedy decoding, scores the raw logits).

    Returns:
        ``logprobs`` (N,), ``values`` (N,) (the value of the state each token was
        generated from, or ``None`` without a value head), ``entropy`` (N,) or ``None``.
    """
    policy = as_policy(policy)
    attn = _model_attn(policy)
    if attn != batch.attn_implementation:
        raise ValueError(
            f"the batch's mask was built for {batch.attn_implementation!r} but the model runs {attn!r}; "
            f"stitch with attn_implementation={attn!r}"
        )
    check_attn_implementation(attn)
    rows, cols = batch.logit_index[:, 0], batch.logit_index[:, 1]
    out = policy(
        batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
        logits_at=(rows, cols), with_values=with_values,
    )
    logits = out["logits"].float()
    if temperature > 0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, batch.target_ids.unsqueeze(-1)).squeeze(-1)
    values = out["values"][rows, cols] if out["values"] is not None else None
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return {"logprobs": logprobs, "values": values, "entropy": entropy}


@torch.no_grad()
def per_turn_logprobs(policy: Any, episode: Episode) -> list[list[float]]:
    """Reference: action log-probs recomputed turn by turn, each from its own contiguous context.

    This is exactly what the model computed at rollout time (positions
    ``0..L-1``, plain causal attention, no custom mask), one forward per turn.
    """
    policy = as_policy(policy)
    out: list[list[float]] = []
    device = next(policy.parameters()).device
    for t in range(len(episode.turns)):
        ctx, act = episode.context_ids(t), episode.action_ids(t)
        ids = torch.tensor([ctx + act], dtype=torch.long, device=device)
        n = len(act)
        if n == 0:
            out.append([])
            continue
        cols = torch.arange(len(ctx) - 1, len(ctx) + n - 1, device=device)
        res = policy(ids, logits_at=(torch.zeros_like(cols), cols))
        logp = torch.log_softmax(res["logits"].float(), dim=-1)
        out.append(logp.gather(-1, ids[0, len(ctx) :].unsqueeze(-1)).squeeze(-1).tolist())
    return out
