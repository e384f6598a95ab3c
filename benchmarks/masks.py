"""Attention-mask memory of the stitched trainer at N=16: dense masks vs block-sparse ones.

Four synthetic MEM1 episodes shaped like N=16 multi-objective QA runs (a 300-token
prompt, 17 turns of 60-120-token actions and 330-480-token retrieved observations,
``mem1`` memory) stitch to rows of about 8-10.5k tokens, the lengths of issue 11.
For each mask form the table gives the bytes that live through the forward:

* ``dense, whole iteration``: what the trainer built before — a (B, S, S) bool visibility
  plus a (B, 1, S, S) additive bf16 mask for all four episodes at once (sizes from the
  shapes; not allocated here);
* ``dense, per micro-batch``: the additive bf16 mask of one micro-batch of ``--micro``
  episodes (built, then measured), what eager/sdpa now get;
* ``BlockMask``: the flex-attention block-sparse mask of the same micro-batch (built
  block row by block row from the O(S) tree ranges, then every tensor it holds counted),
  and the fraction of 128×128 blocks flex attention skips.

CPU only (building, not attending); the machine may be loaded: build times are indicative.

    python -m benchmarks.masks
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from mem1_agent.trajectory import EpisodeBuilder, block_mask, stitch, tree_attention_mask
from mem1_gym.memory import Segment, make_memory_policy

MIB = 2**20


def n16_episode(seed: int, turns: int = 17, scale: float = 1.0, vocab: int = 30000) -> object:
    """A synthetic episode with N=16-like segment lengths (times ``scale``) under the real ``mem1`` visibility."""
    rng = random.Random(seed)
    memory = make_memory_policy("mem1")
    builder = EpisodeBuilder()
    segments: list[Segment] = []

    def add(kind: str, turn: int, n: int) -> int:
        n = max(1, round(n * scale))
        sid = len(segments)
        builder.add_segment(sid, kind, turn, [rng.randrange(3, vocab) for _ in range(n)])
        segments.append(Segment(sid, kind, turn, "", n))  # type: ignore[arg-type]
        return sid

    add("prompt", -1, 300)
    for t in range(turns):
        visible = memory.visible(segments)
        action = add("action", t, rng.randint(60, 120))
        builder.add_turn(action, visible, [0.0] * len(builder.segments[action].ids))
        add("observation", t, rng.randint(330, 480))
    return builder.build()


def tensor_bytes(obj: object) -> int:
    """Bytes of every tensor an object (a tensor, a BlockMask) holds."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    return sum(t.numel() * t.element_size() for t in obj.as_tuple() if isinstance(t, torch.Tensor))  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--micro", type=int, default=1, help="episodes per micro-batch")
    args = p.parse_args()
    episodes = [n16_episode(s) for s in range(args.episodes)]
    lengths = [stitch([ep], 0).n_tokens for ep in episodes]
    whole = stitch(episodes, 0, pack=False)
    B, S = whole.input_ids.shape
    dense_whole = B * S * S * (1 + 2)  # bool visibility + bf16 additive mask
    micro = episodes[: args.micro]
    start = time.perf_counter()
    batch = stitch(micro, 0, pack=False, attn_implementation="sdpa", dtype=torch.bfloat16)
    dense_s = time.perf_counter() - start
    dense_micro = tensor_bytes(batch.attention_mask)
    ranges = tensor_bytes(batch.tree_in) + tensor_bytes(batch.tree_out)
    start = time.perf_counter()
    blocks = block_mask(batch.tree_in, batch.tree_out)
    block_s = time.perf_counter() - start
    block_bytes = tensor_bytes(blocks) + ranges
    skipped = float(blocks.sparsity()) / 100.0
    del batch
    # The dense form must agree with the block-sparse one on the first query block (a spot check).
    check = stitch(micro, 0, pack=False, attn_implementation="eager")
    assert torch.equal(tree_attention_mask(check.tree_in, check.tree_out, "eager", torch.float32)[:, 0, :128] == 0,
                       check.visibility[:, :128])

    print(f"masks: {args.episodes} N=16-shaped mem1 episodes, stitched lengths {sorted(lengths)}; micro-batch of {args.micro}")
    print(f"| {'mask':<52} | {'MiB':>9} | {'vs dense whole':>14} | {'build s':>8} |")
    print(f"|{'-' * 54}|{'-' * 11}|{'-' * 16}|{'-' * 10}|")
    rows = [
        (f"dense bool + bf16, whole iteration ({B} rows x {S})", dense_whole, float("nan")),
        (f"dense bf16, per micro-batch ({args.micro} x {micro_len(micro)})", dense_micro, dense_s),
        (f"BlockMask + tree ranges, per micro-batch", block_bytes, block_s),
    ]
    for label, nbytes, sec in rows:
        print(f"| {label:<52} | {nbytes / MIB:>9.2f} | {dense_whole / nbytes:>13.0f}x | {sec:>8.2f} |")
    print(f"BlockMask: {skipped:.1%} of the 128x128 blocks skipped by flex attention")


def micro_len(episodes: list) -> int:
    """Row length of a micro-batch stitched without packing."""
    return max(stitch([ep], 0).n_tokens for ep in episodes)


if __name__ == "__main__":
    main()
