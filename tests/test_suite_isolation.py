"""The suite's own caches: nothing under the user's home cache or the system temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import CACHE_VARIABLES


def test_every_cache_points_into_the_session_folder(isolated_caches):
    for name, sub in CACHE_VARIABLES.items():
        assert os.environ[name] == str(isolated_caches / sub), name
    assert tempfile.gettempdir() == str(isolated_caches / "tmp")
    # A subprocess (accelerate launch, a notebook kernel) inherits them.
    out = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(isolated_caches / "tmp")


def test_the_default_model_stays_reachable(isolated_caches):
    from mem1_agent.models import cache_dir
    from mem1_gym.retrieval import default_cache_dir

    assert cache_dir() == isolated_caches / "mem1_gym" == default_cache_dir()
    real = Path.home() / ".cache" / "mem1_gym" / "models"
    if real.is_dir():
        assert (cache_dir() / "models").resolve() == real.resolve()
