"""A released-checkpoint-shaped evaluation end to end, at the command line.

``mem1 serve-policy`` serves a tiny model on a free port; ``mem1 eval --policy openai:URL#MODEL
--tags checkpoint`` plays MultiObjectiveQA against it, so the envs speak the checkpoints' tags
(``think``/``search``/``answer``/``information``) and, following the tags, Search-R1's observation
format. The byte-level format is tested in ``test_qa_env.py``; here the whole path runs.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401  (registers the envs)
from mem1_agent.evaluate import Cell, EvalConfig

ENV = "mem1_gym/MultiObjectiveQA-v0"
ENV_KWARGS = {"dataset": "fictional", "dataset_size": 300}


def test_checkpoint_tags_make_search_r1_envs() -> None:
    config = EvalConfig(tags="checkpoint", envs=[ENV], env_kwargs=ENV_KWARGS)
    kwargs = Cell(ENV, "mem1", 1, 0, True).env_kwargs(config)
    env = gym.make(ENV, **kwargs)
    assert env.unwrapped.format == "search-r1" and env.unwrapped.tags.info == "information"
    env.reset(seed=0)
    text = env.step(env.unwrapped.oracle_action())[4]["new_segments"][1]["text"]
    assert re.fullmatch(r'\n\n<information>Doc 1\(Title: "[^"\n]+"\) .*</information>\n\n', text, re.DOTALL), text


@pytest.mark.slow  # two fresh interpreters import torch and transformers
def test_eval_openai_policy_with_checkpoint_tags_against_serve_policy(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "mem1_agent.cli"]
    server = subprocess.Popen(cli + ["serve-policy", "--model", "tiny", "--port", "0", "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, (line, server.stderr.read() if server.poll() is not None else "")
        out = tmp_path / "eval"
        done = subprocess.run(
            cli + ["eval", "--policy", f"openai:{found.group(0)}/v1#tiny", "--tags", "checkpoint", "--envs", ENV,
                   "--memory", "mem1", "--objectives", "1", "--seeds", "0", "--episodes", "2", "--batch-size", "2",
                   "--max-new-tokens", "8", "--env-kwargs", json.dumps(ENV_KWARGS), "--out", str(out),
                   "--no-progress"],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=30)
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["policy"], row["tags"], row["env"]) == ("openai:tiny", "checkpoint", ENV)
    # The random tiny model writes no valid turn: every turn is refused until the limit (3N + 2 = 5).
    assert (float(row["turns"]), float(row["em"]), float(row["invalid_rate"])) == (5.0, 0.0, 1.0)
