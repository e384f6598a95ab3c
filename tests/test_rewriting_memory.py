"""Memory policies that rewrite: inserted environment-authored segments (summary:k, a user summariser)."""

from __future__ import annotations

import pytest
import torch

from mem1_gym.context import Transcript
from mem1_gym.memory import MemoryPolicy, Segment, SummaryMemory, make_memory_policy, rule_summary
from mem1_agent.consistency import check, rollout_episode
from mem1_agent.models import load_policy
from mem1_agent.toy_task import make_env
from mem1_agent.trajectory import per_turn_logprobs, stitch, stitched_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _play(memory, turns: int = 3):
    env = make_env("toy", memory=memory, n_keys=3, max_turns=5).unwrapped
    _, reset_info = env.reset(seed=0)
    infos = [reset_info]
    for _ in range(turns):
        infos.append(env.step(env.oracle_action())[4])
    return env, infos


def test_summary_policy_inserts_a_summary_of_dropped_turns():
    env, infos = _play("summary:1")
    segs = env.transcript.segments
    # Turn 0 drops out of the window after turn 1: a memory segment follows turn 1's observation.
    assert [s["kind"] for s in infos[1]["new_segments"]] == ["action", "observation"]
    assert [s["kind"] for s in infos[2]["new_segments"]] == ["action", "observation", "memory"]
    assert infos[2]["visible_ids"] == [0, 5, 3, 4]
    assert infos[3]["visible_ids"] == [0, 8, 6, 7]
    assert segs[5].text == rule_summary(segs[1:3])
    assert segs[5].text == (
        "\n[Summary of earlier turns 0-0]\n"
        "turn 0: <IS> found: nothing yet </IS><query> epsilon </query> -> <info> epsilon = 5 </info>\n"
    )
    # The inserted text counts in the context (whitespace words): 5 + 15 for the summary.
    assert [segs[i].tokens for i in (0, 5, 3, 4)] == [31, 20, 8, 5]
    assert infos[2]["context_tokens"] == 64
    # Peak: turn 2 is generated after 64 tokens and is 11 long (75); the context after it is
    # 31 + 36 (summary of turns 0-1) + 11 + 5 = 83, the largest.
    assert segs[8].tokens == 36
    assert env.metrics()["peak_tokens"] == 83


def test_window_and_summary_agree_apart_from_the_summary():
    w_env, _ = _play("window:1")
    s_env, _ = _play("summary:1")

    def shown(env):
        segs = env.transcript.segments
        return [(segs[i].kind, segs[i].turn, segs[i].text) for i in env.transcript.visible_ids if segs[i].kind != "memory"]

    assert shown(w_env) == shown(s_env)
    assert [s.kind for s in s_env.transcript.segments].count("memory") == 2
    assert [s.kind for s in w_env.transcript.segments].count("memory") == 0


def test_user_summariser_hook_and_bad_return():
    calls = []

    def summarize(dropped):
        calls.append([s.id for s in dropped])
        return f"\nforgot {len(dropped)} segments\n"

    env, infos = _play(SummaryMemory(1, summarize=summarize))
    assert calls == [[1, 2], [1, 2, 3, 4]]
    assert env.transcript.segments[8].text == "\nforgot 4 segments\n"
    assert make_memory_policy("summary:2").spec() == "summary:2"
    with pytest.raises(TypeError, match="must return a str"):
        _play(SummaryMemory(1, summarize=lambda dropped: 3))


def test_a_custom_inserting_policy_plugs_into_the_transcript():
    class Scratchpad(MemoryPolicy):
        """Keeps only the prompt and a running count of turns (a memory-store read-out)."""

        def insert(self, segments):
            turns = sum(1 for s in segments if s.kind == "action")
            return [f" [turns so far: {turns}]"]

        def visible(self, segments):
            return [0, [s.id for s in segments if s.kind == "memory"][-1]]

    tr = Transcript(Scratchpad())
    tr.add("prompt", -1, "task here")
    assert [s.kind for s in tr.segments] == ["prompt", "memory"]
    tr.add("action", 0, "a b c")
    tr.add("observation", 0, "o")
    assert tr.visible_text() == "task here [turns so far: 1]"
    assert tr.context_tokens == 2 + 4
    assert tr.metrics() == {"peak_tokens": 2 + 4 + 3, "dependency": 3 * 6 + 6}


def test_tokenized_env_counts_inserted_segments_exactly():
    from mem1_agent.models import tiny_tokenizer
    from mem1_gym.wrappers import TokenizedEnv

    tok = tiny_tokenizer()
    env = TokenizedEnv(make_env("toy", memory="summary:1", n_keys=3, max_turns=5), tok, max_length=4096)
    _, info = env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(env.unwrapped.oracle_action())
    ids = env.segment_token_ids
    memory_id = info["visible_ids"][1]
    assert env.unwrapped.transcript.segments[memory_id].kind == "memory"
    assert ids[memory_id] == tok(env.unwrapped.transcript.segments[memory_id].text, add_special_tokens=False)["input_ids"]
    assert info["context_tokens"] == len(info["input_ids"]) == sum(len(ids[i]) for i in info["visible_ids"])


def test_stitched_trajectory_with_inserted_summaries_is_exact():
    torch.manual_seed(0)
    policy, tok = load_policy("tiny", attn_implementation="eager", value_head=False)
    policy.eval()
    eps = [rollout_episode(policy, tok, make_env("toy", memory="summary:1", n_keys=3, max_turns=4, seed=s), s, max_new_tokens=8) for s in range(2)]
    kinds = [[ep.segments[i].kind for i in ep.turns[-1].visible_ids] for ep in eps]
    assert kinds == [["prompt", "memory", "action", "observation"]] * 2
    batch = stitch(eps, tok.pad_token_id, attn_implementation="eager")
    # Inserted tokens are context only: the loss is on exactly the generated action tokens.
    assert int(batch.loss_mask.sum()) == sum(len(ep.action_ids(t)) for ep in eps for t in range(len(ep.turns)))
    with torch.no_grad():
        stitched = stitched_forward(policy, batch)["logprobs"]
    reference = torch.tensor([x for ep in eps for lps in per_turn_logprobs(policy, ep) for x in lps])
    assert (stitched - reference).abs().max().item() <= 1e-4
    results = check(policy, tok, ["eager", "sdpa"], ["summary:1"], turns=4, episodes=2, env_id="toy", max_new_tokens=8)
    assert [r.max_gap <= 1e-4 for r in results] == [True, True]
