"""Fixtures shared across test modules, and the suite's own cache and log folders.

The suite must not read or write the user's ``~/.cache`` or leave folders in ``/tmp``: every
cache and log location the code, its libraries and subprocesses use is pointed at one temporary
folder for the session (removed afterwards). It is set in :func:`pytest_configure`, before any
test module is imported, because several libraries (huggingface_hub, matplotlib, torch's
inductor) read their locations once at import time; :func:`isolated_caches` is the session
fixture that hands the folder to tests that want to look at it. The converted default model
stays reachable: the session's ``mem1_gym/models`` is a link to the real one, so model tests
do not convert it again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Environment variables pointed into the session folder: name -> sub-folder.
CACHE_VARIABLES = {
    "MEM1_CACHE_DIR": "mem1_gym",  # retrieval indexes (models: linked, see below)
    "WEBSHOP_CACHE_DIR": "webshop_env",  # WebShop search indexes
    "HF_HOME": "huggingface",  # hub cache, modules, tokens (tests never download)
    "XDG_CACHE_HOME": "xdg-cache",
    "MPLCONFIGDIR": "matplotlib",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
    "IPYTHONDIR": "ipython",
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",  # notebook kernels' connection files
    "SB3_LOGDIR": "sb3-logs",
    "TMPDIR": "tmp",  # torchelastic_* from accelerate launch, SB3 and anything else using tempfile
}
_SESSION_ROOT: Path | None = None
_SAVED: dict[str, str | None] = {}


def _real_model_cache() -> Path:
    env = os.environ.get("MEM1_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "mem1_gym") / "models"


def pytest_configure(config: pytest.Config) -> None:
    """Point every cache and log folder at a fresh temporary folder for this session."""
    global _SESSION_ROOT
    models = _real_model_cache()
    _SESSION_ROOT = Path(tempfile.mkdtemp(prefix="mem1-tests-"))
    for name, sub in CACHE_VARIABLES.items():
        _SAVED[name] = os.environ.get(name)
        folder = _SESSION_ROOT / sub
        folder.mkdir()
        os.environ[name] = str(folder)
    if models.is_dir():
        (_SESSION_ROOT / "mem1_gym" / "models").symlink_to(models, target_is_directory=True)
    tempfile.tempdir = None  # gettempdir() re-reads TMPDIR


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore the environment and remove the session folder."""
    for name, value in _SAVED.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None
    if _SESSION_ROOT is not None:
        # Unlink the model link first so that rmtree never follows it into the real cache.
        link = _SESSION_ROOT / "mem1_gym" / "models"
        if link.is_symlink():
            link.unlink()
        shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_caches() -> Path:
    """The session's cache root (every variable of :data:`CACHE_VARIABLES` points inside it)."""
    assert _SESSION_ROOT is not None and os.environ["MEM1_CACHE_DIR"] == str(_SESSION_ROOT / "mem1_gym")
    return _SESSION_ROOT


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: tiny models gain nothing from more, and on a
    shared CPU OpenMP spin-waiting makes them an order of magnitude slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sb3_logs_in_tmp(tmp_path, monkeypatch):
    """stable-baselines3's ``learn()`` creates ``/tmp/SB3-<date>`` for its default logger unless
    ``SB3_LOGDIR`` is set; point it at the test's own temp dir so the suite leaves nothing behind.
    Modules that train with SB3 use it with ``pytestmark = pytest.mark.usefixtures("sb3_logs_in_tmp")``."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3-logs"))


@pytest.fixture
def refused_port():
    """A loopback port where connections are refused, for as long as the test runs.

    A socket bound to port 0 (the kernel picks the port) that never listens: unlike picking a
    free port and closing it, nothing else can take the port while the test relies on it.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
