"""Order-independent, process-independent seeding.

Python's ``hash()`` of strings is salted per process, so anything that must agree across
processes (prices drawn for a price range, goal price ceilings, synthetic products) derives its
random stream from a keyed BLAKE2 digest of its identifying parts instead.
"""

from __future__ import annotations

import hashlib
import random


def stable_seed(*parts: object) -> int:
    """A 64-bit seed that depends only on ``parts`` (their ``str`` forms), never on the process."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def stable_rng(*parts: object) -> random.Random:
    """A fresh ``random.Random`` seeded by :func:`stable_seed` of ``parts``."""
    return random.Random(stable_seed(*parts))
