"""How many CPU threads torch uses: a sensible default, and the ``--threads`` flag of model commands.

torch's intra-op pool defaults to one thread per physical core, whatever else the machine runs.
Its OpenMP threads meet at a barrier after every parallel region, so when other processes hold
some of the cores, each region waits for a thread that is not scheduled: on a busy 2-core machine
this made the demo's generation 18x slower (2.1 vs 39 tokens/s; ``benchmarks/threads.py`` measures
it). The default therefore takes only the cores that look free:

* the cores this process may run on (``sched_getaffinity``), at most torch's own default
  (physical cores);
* minus the 1-minute load average (processes already running or waiting), rounded down;
* at least 1. An explicit ``OMP_NUM_THREADS`` or ``--threads`` always wins.
"""

from __future__ import annotations

import argparse
import math
import os

from .errors import BadArgument


def available_cores() -> int:
    """Cores this process may run on, capped at torch's default pool size (physical cores)."""
    import torch

    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        allowed = os.cpu_count() or 1
    return max(1, min(allowed, torch.get_num_threads()))


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """The thread count for ``cores`` available cores under a 1-minute ``load`` average (see the module docstring)."""
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else keep ``OMP_NUM_THREADS`` if set, else the default.

    Returns the thread count in effect.
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise BadArgument(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads N`` option of the commands that run models."""
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: the free cores: available cores minus the load average, at least 1)",
    )
