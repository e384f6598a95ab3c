"""UnicodeText: any string, samples with non-ASCII, and AsyncVectorEnv shared memory."""

import copy

from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

from mem1_gym.spaces import UnicodeText


def test_contains_any_string_within_bounds():
    space = UnicodeText(10)
    for text in ["", "héllo", "漢字😀", "a\x00b\x1f", "\ud800"]:
        assert space.contains(text)
    assert not space.contains("x" * 11)
    assert not space.contains(b"bytes")


def test_samples_are_members_and_varied():
    space = UnicodeText(1000, seed=0)
    samples = [space.sample() for _ in range(50)]
    assert all(space.contains(s) and len(s) <= 64 for s in samples)
    assert any(ord(ch) > 127 for s in samples for ch in s)


def test_shared_memory_is_a_live_view():
    space = UnicodeText(16)
    shm = create_shared_memory(space, n=2)
    view = read_from_shared_memory(space, shm, n=2)
    write_to_shared_memory(space, 0, "a\x00b 😀", shm)
    write_to_shared_memory(space, 1, "\ud800x", shm)
    assert view[0] == "a\x00b 😀" and view[1] == "\ud800x"
    frozen = copy.deepcopy(view)
    write_to_shared_memory(space, 0, "new", shm)
    assert frozen == ("a\x00b 😀", "\ud800x") and view[0] == "new"
