"""Memory policies and the transcript's context accounting."""

import pytest

from mem1_gym.context import Transcript, whitespace_token_counter
from mem1_gym.memory import MemoryPolicy, Segment, make_memory_policy, memory_policies, register_memory_policy


def build(policy: str, turns: int = 4) -> Transcript:
    t = Transcript(policy)
    t.add("prompt", -1, "p " * 10)  # 10 tokens
    for i in range(turns):
        t.add("action", i, "a " * 3)  # 3 tokens
        t.add("observation", i, "o " * 5)  # 5 tokens
    return t


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("full", list(range(9))),
        ("mem1", [0, 7, 8]),
        ("window:1", [0, 7, 8]),
        ("window:2", [0, 5, 6, 7, 8]),
        ("window:10", list(range(9))),
        ("truncate:18", [0, 7, 8]),  # 10 + 3 + 5 fits, the next observation does not
        ("truncate:23", [0, 6, 7, 8]),  # exactly fits one more observation
        ("truncate:3", [0]),  # the prompt always stays
    ],
)
def test_visible_segments(policy, expected):
    assert build(policy).visible_ids == expected


def test_visibility_before_first_turn_is_the_prompt():
    for name in ("full", "mem1", "window:3", "truncate:5"):
        t = Transcript(name)
        t.add("prompt", -1, "a b c")
        assert t.visible_ids == [0]


def test_peak_and_dependency_follow_the_paper_definitions():
    full, mem1 = build("full"), build("mem1")
    # Turn i of `full` generates 3 tokens after 10 + 8 i visible ones.
    contexts = [10 + 8 * i for i in range(4)]
    assert full.peak_tokens == contexts[-1] + 3
    assert full.dependency == sum(3 * c + 6 for c in contexts)
    # mem1: after the first turn the context is always prompt + 3 + 5.
    assert mem1.peak_tokens == 18 + 3
    assert mem1.dependency == (3 * 10 + 6) + 3 * (3 * 18 + 6)
    assert mem1.context_tokens == 18


def test_visible_text_concatenates_in_order():
    t = Transcript("mem1")
    t.add("prompt", -1, "P|")
    t.add("action", 0, "A0|")
    t.add("observation", 0, "O0|")
    t.add("action", 1, "A1|")
    t.add("observation", 1, "O1|")
    assert t.visible_text() == "P|A1|O1|"


@pytest.mark.parametrize("spec", ["nope", "window:0", "window:x", "truncate:-1", 3])
def test_bad_specs_are_clear_errors(spec):
    with pytest.raises((ValueError, TypeError), match="memory policy|window|token budget|must be"):
        make_memory_policy(spec)


def test_registering_a_new_policy():
    @register_memory_policy("prompt-only-test")
    class PromptOnly(MemoryPolicy):
        def visible(self, segments):
            return [s.id for s in segments if s.kind == "prompt"]

    assert "prompt-only-test" in memory_policies()
    t = Transcript("prompt-only-test", whitespace_token_counter)
    t.add("prompt", -1, "x")
    t.add("action", 0, "y")
    t.add("observation", 0, "z")
    assert t.visible_ids == [0]
    assert make_memory_policy("prompt-only-test").spec() == "prompt-only-test"


def test_segment_dict_is_plain():
    seg = Segment(0, "prompt", -1, "hi", 1)
    assert seg.to_dict() == {"id": 0, "kind": "prompt", "turn": -1, "text": "hi", "tokens": 1}
