"""``benchmarks/learning.py`` end to end at a tiny size (not timed, not asserting learning)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _learning():
    spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through the module
    spec.loader.exec_module(module)
    return module


ARMS = {"sft", "sft@full", "sft+ppo", "sft+grpo", "sft@train", "sft+ppo@train", "sft+grpo@train"}

TINY = [
    "experiment.tasks=3", "experiment.sizes=[1, 2]", "experiment.full_sizes=[1]",
    "experiment.curve_every=1", "experiment.eval_batch=3", "experiment.bootstrap=50",
    "experiment.model={hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}",
    "env.kwargs.dataset_size=100", "env.num_envs=2", "sft.steps=2", "sft.episodes=4", "sft.batch_size=2",
    "train.iterations=2", "ppo.episodes_per_iteration=2", "ppo.num_minibatches=1", "ppo.micro_batch_size=2",
    "grpo.group_size=2", "grpo.tasks_per_iteration=1", "grpo.num_minibatches=1", "grpo.micro_batch_size=2",
    "sampling.max_new_tokens=8", "eval.max_new_tokens=8",
]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_workers_split_the_run_and_the_full_command_reuses_their_parts(tmp_path):
    learning = _learning()
    runs, results = tmp_path / "runs", tmp_path / "results"
    common = ["--out", str(runs), "experiment.sft_seed=0", *TINY]
    assert learning.main(["--worker", *common, "experiment.seeds=[1]", "experiment.arms=[sft, sft+ppo]"]) == 0
    assert (runs / "seed1" / "ppo.json").is_file() and not (runs / "seed1" / "grpo.json").exists()
    assert not (runs / "sft0" / "grids.json").exists()  # a worker with seeds leaves the SFT grid to another
    kept = (runs / "seed1" / "ppo.json").read_text()
    assert learning.main(["--results", str(results), *common, "experiment.seeds=[0, 1]"]) == 0
    doc = json.loads((results / "learning.json").read_text())
    # The worker's arm is reused as it was, not trained again.
    assert (runs / "seed1" / "ppo.json").read_text() == kept
    assert doc["curves"]["sft+ppo"]["em"][-1][1] == json.loads(kept)["curve"]["em"][-1]
    assert set(doc["arms"]) == ARMS


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_jobs_train_every_arm_in_worker_processes(tmp_path):
    learning = _learning()
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["--out", str(runs), "--results", str(results), "experiment.sft_seed=0", *TINY, "experiment.seeds=[0, 1]"]
    assert learning.main(["--jobs", "2", *args]) == 0
    # One job per (seed, RL arm), each with its log; the SFT model was trained once, by the parent.
    assert sorted(p.name for p in (runs / "logs").iterdir()) == [f"job{k}.log" for k in range(4)]
    for seed in (0, 1):
        for algo in ("ppo", "grpo"):
            assert (runs / f"seed{seed}" / f"{algo}.json").is_file()
    assert "SFT seed 0" not in "".join(p.read_text() for p in (runs / "logs").iterdir())
    doc = json.loads((results / "learning.json").read_text())
    assert set(doc["arms"]) == ARMS
    assert np.array(doc["arms"]["sft+grpo"]["per_task_em"]["2"]).shape == (2, 3)
    # A job that fails is reported with its log, not swallowed.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "seed0").write_text("a file where the workers write their runs")
    broken = ["--out", str(tmp_path / "broken"), "--results", str(tmp_path / "none"), "experiment.sft_seed=0", *TINY,
              "experiment.seeds=[0]"]
    assert learning.main(["--jobs", "2", *broken]) == 1
    assert not (tmp_path / "none" / "learning.json").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("sft_seed", ["0", "null"], ids=["shared-sft", "sft-per-seed"])
def test_the_experiment_runs_end_to_end_and_writes_the_issue_shape(tmp_path, sft_seed, capsys):
    learning = _learning()
    results = tmp_path / "results"
    rc = learning.main([
        "--out", str(tmp_path / "runs"), "--results", str(results),
        "experiment.seeds=[0, 1]", f"experiment.sft_seed={sft_seed}", *TINY,
    ])
    assert rc == 0
    doc = json.loads((results / "learning.json").read_text())
    assert doc["tasks_per_seed"] == 3 and doc["seeds"] == [0, 1]
    assert set(doc["arms"]) == ARMS
    for arm in ("sft", "sft+ppo", "sft+grpo"):
        entry = doc["arms"][arm]
        assert set(entry["em"]) == {"1", "2"} and entry["memory"] == "mem1"
        for n, per_seed in entry["em"].items():
            # EM per seed is the per-task EM sum divided by N and by the number of tasks.
            tasks = np.array(entry["per_task_em"][n])
            assert tasks.shape == (2, 3)
            assert np.allclose(per_seed, tasks.sum(axis=1) / (int(n) * 3))
    assert set(doc["arms"]["sft@full"]["em"]) == {"1"} and doc["arms"]["sft@full"]["memory"] == "full"
    # The in-distribution cell: training-split questions at the training size only, with its own differences.
    for arm in ("sft@train", "sft+ppo@train", "sft+grpo@train"):
        assert doc["arms"][arm]["split"] == "train" and set(doc["arms"][arm]["em"]) == {"1"}
    assert doc["arms"]["sft"]["split"] == "test"
    inside = doc["differences"]["sft+ppo - sft @ N=1, split train"]
    assert math.isclose(inside["welch_over_seeds"]["diff"],
                        float(np.mean(doc["arms"]["sft+ppo@train"]["em"]["1"]) - np.mean(doc["arms"]["sft@train"]["em"]["1"])),
                        abs_tol=1e-12)
    for arm in ("sft+ppo", "sft+grpo"):
        curve = doc["curves"][arm]
        assert curve["iterations"] == [0, 1, 2]
        # Iteration 0 of every curve is the SFT model on the same tasks at the training size.
        assert np.allclose(np.array(curve["em"])[0], doc["arms"]["sft"]["em"]["1"])
    diff = doc["differences"]["sft+ppo - sft @ N=1"]
    ppo, sft = np.array(doc["arms"]["sft+ppo"]["em"]["1"]), np.array(doc["arms"]["sft"]["em"]["1"])
    assert math.isclose(diff["welch_over_seeds"]["diff"], float(ppo.mean() - sft.mean()), abs_tol=1e-12)
    assert diff["paired_bootstrap_over_tasks"]["tasks"] == 3
    assert doc["verdict"]["ppo_beats_sft_at_training_size"] is (diff["paired_over_seeds"]["ci95"][0] > 0)
    if sft_seed == "0":  # one SFT model is every seed's start: its evaluation is the same in every seed
        assert doc["arms"]["sft"]["per_task_em"]["1"][0] == doc["arms"]["sft"]["per_task_em"]["1"][1]
        capsys.readouterr()
        assert learning.main(["--diagnose", str(tmp_path / "runs" / "sft0" / "model"), *TINY]) == 0
        diag = json.loads(capsys.readouterr().out)
        # On the held-out split it scores what the experiment measured for the SFT arm (same tasks, greedy).
        assert diag["test"]["em_over_n"] == pytest.approx(doc["arms"]["sft"]["em"]["1"][0])
        assert set(diag["train"]) == {"em_over_n", "first_query_is_gold", "answers_unknown"}
    capsys.readouterr()
    assert learning.main(["--report", str(results / "learning.json")]) == 0
    report = capsys.readouterr().out
    ppo_row = next(line for line in report.splitlines() if line.startswith("| sft+ppo | mem1 | held-out (test) |"))
    first = doc["arms"]["sft+ppo"]["em_mean_ci95"]["1"]
    assert f"{first['mean']:.3f} ± {first['ci95']:.3f}" in ppo_row
    assert doc["plots"]
    for name in doc["plots"]:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_t_quantile_matches_tabulated_values():
    learning = _learning()
    # Two-sided 95% critical values of Student's t (standard tables).
    for df, expected in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert learning.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def test_welch_interval_against_a_hand_computed_case():
    learning = _learning()
    out = learning.welch([1.0, 2.0, 3.0], [0.0, 0.0, 3.0])
    # means 2 and 1; variances 1 and 3; se = sqrt(1/3 + 3/3); df = (4/3)^2 / ((1/3)^2/2 + 1/2)
    se, df = math.sqrt(4 / 3), (4 / 3) ** 2 / ((1 / 9) / 2 + 1 / 2)
    half = learning.t_quantile(0.975, df) * se
    assert out["diff"] == pytest.approx(1.0)
    assert out["df"] == pytest.approx(df)
    assert out["ci95"] == pytest.approx([1.0 - half, 1.0 + half])


@pytest.mark.parametrize("path", ["benchmarks/learning.yaml", "examples/configs/learning_smollm2.yaml"])
def test_the_experiment_configs_load(path):
    learning = _learning()
    lc = learning.load_config_file(ROOT / path)
    assert lc.experiment.tasks >= 64 and len(lc.experiment.seeds) >= 3
    assert lc.experiment.sizes[0] == 2 and 16 in lc.experiment.sizes
    assert learning.train_config(lc).train.iterations == lc.train.iterations
