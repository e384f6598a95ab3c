"""The notebooks in ``examples/`` run end to end (nbclient), on CPU, with their small settings.

Each notebook runs in a fresh kernel of *this* interpreter (a kernelspec written to a
temporary folder points at ``sys.executable``, so whatever ``jupyter`` happens to be
installed elsewhere is never used), in a temporary working directory, with the
repository on ``PYTHONPATH``; any cell error fails the test and names the cell.
Committed notebooks must carry no outputs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
KERNEL_NAME = "mem1-notebook-test"
#: Seconds any one cell may take (the training cells are the longest).
CELL_TIMEOUT = 240

NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec folder whose only kernel runs ``sys.executable -m ipykernel_launcher``."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }))
    return root


def run_notebook(name: str, kernel_dir: Path, workdir: Path, folder: Path = EXAMPLES) -> nbformat.NotebookNode:
    """Execute ``folder/name`` in ``workdir``; returns the executed notebook. Fails the test on any cell error."""
    nb = nbformat.read(folder / name, as_version=4)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # Tiny models gain nothing from more threads, and on a loaded CI machine OpenMP's spin-waiting
    # threads slow them down several-fold.
    env["OMP_NUM_THREADS"] = "1"
    client = nbclient.NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False, resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env=env, cwd=str(workdir))
    except CellExecutionError as err:
        pytest.fail(f"{name}: a cell failed:\n{err}", pytrace=False)
    finally:
        if km.has_kernel:  # nbclient leaves a kernel manager it was given to its owner
            km.shutdown_kernel(now=True)
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def n_images(nb: nbformat.NotebookNode) -> int:
    """PNG outputs (plots, screenshots) of an executed notebook."""
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_a_failing_cell_fails_the_run(kernel_dir: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import mem1_gym, os\nprint(os.getcwd())"),
        nbformat.v4.new_code_cell("raise ValueError('broken cell')"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nbformat.write(nb, tmp_path / "broken.ipynb")
    with pytest.raises(pytest.fail.Exception, match="broken cell"):
        run_notebook("broken.ipynb", kernel_dir, tmp_path, folder=tmp_path)


def test_the_four_notebooks_exist() -> None:
    assert NOTEBOOKS == ["01_env_tour.ipynb", "02_train_mem1_agent.ipynb", "03_sb3.ipynb", "04_webshop_browser.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_valid_and_have_no_outputs(name: str) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), f"{name}: clear the outputs before committing"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{name}: start with a title cell"


def test_env_tour(kernel_dir: Path, tmp_path: Path) -> None:
    nb = run_notebook("01_env_tour.ipynb", kernel_dir, tmp_path)
    out = text_of(nb)
    assert "episode metrics" in out and "peak_tokens" in out and "reward breakdown" in out
    peaks = dict(re.findall(r"^(full|mem1) +((?:\d+ +){3}\d+)$", out, re.M))
    full, mem1 = ([int(v) for v in peaks[p].split()] for p in ("full", "mem1"))
    assert mem1[-1] < full[-1]  # at N=8 the pruned context is the smaller one
    assert n_images(nb) == 1  # the peak-tokens / dependency plot


@pytest.mark.slow
def test_train_mem1_agent(kernel_dir: Path, tmp_path: Path) -> None:
    nb = run_notebook("02_train_mem1_agent.ipynb", kernel_dir, tmp_path)
    out = text_of(nb)
    gap = float(re.search(r"largest gap: (\S+)", out).group(1))
    assert gap < 1e-4, out
    assert (tmp_path / "runs" / "nb02_tiny" / "checkpoint.json").is_file()  # written where the notebook ran
    assert n_images(nb) == 2  # the SFT loss curve and the two masks


@pytest.mark.slow
def test_sb3(kernel_dir: Path, tmp_path: Path) -> None:
    nb = run_notebook("03_sb3.ipynb", kernel_dir, tmp_path)
    out = text_of(nb)
    assert re.search(r"PPO: 256 tokens", out) and "MaskablePPO: 2048 steps" in out
    assert "metrics: {" in out and "'em': 1.0" in out  # the oracle, token by token, solves the task


@pytest.mark.slow  # 18-20 s measured (suite --durations, 2 cores)
@pytest.mark.browser
def test_webshop_browser(kernel_dir: Path, tmp_path: Path) -> None:
    from webshop_env.browser_env import BrowserUnavailable, find_browser

    try:
        find_browser()
    except BrowserUnavailable as err:
        pytest.skip(f"04_webshop_browser.ipynb needs a browser: {err}")
    nb = run_notebook("04_webshop_browser.ipynb", kernel_dir, tmp_path)
    out = text_of(nb)
    assert "same observation: True" in out and "same observation: False" not in out
    scores = re.findall(r"browser ([\d.]+), in-process ([\d.]+)", out)
    assert len(scores) == 5 and all(b == lo for b, lo in scores)
    assert (tmp_path / "runs" / "webshop_item.png").stat().st_size > 1000 and n_images(nb) == 1
