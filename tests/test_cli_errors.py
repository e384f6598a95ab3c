"""Common mistakes on the command line: one clear line on stderr, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mem1_agent.cli import main

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "examples" / "configs" / "qa2_tiny.yaml")


def _one_line_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert len(err) == 1 and err[0] == expected, err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mem1 0.1.0")


def test_train_without_config_says_what_it_would_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "mem1 train: no --config given; the defaults would run 10 PPO iterations of model 'tiny' on "
        "mem1_gym/MultiObjectiveQA-v0 (memory=mem1, 4 envs), writing runs/mem1.",
        "Pass --config FILE (presets: examples/configs/), or --defaults to run them.",
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("env.memory=bogus", "mem1 train: env 'mem1_gym/MultiObjectiveQA-v0' rejected its arguments ['max_turns', 'memory', "
         "'n_objectives', 'split', 'topk']: unknown memory policy 'bogus'; registered: {registered}"),
        ("env.kwargs.colour=1", "mem1 train: env 'mem1_gym/MultiObjectiveQA-v0' rejected its arguments ['colour', 'max_turns', "
         "'memory', 'n_objectives', 'split', 'topk']: MultiObjectiveQAEnv.__init__() got an unexpected keyword argument 'colour'"),
        ("model.attn_implementation=flash_attention_2", f"mem1 train: {PRESET}: model.attn_implementation: attention "
         "implementation 'flash_attention_2' cannot express a stitched-trajectory mask; use one of eager, sdpa, flex_attention "
         "(flash attention kernels only support causal/padding masks)"),
    ],
)
def test_train_config_mistakes(capsys, tmp_path, override, expected):
    from mem1_gym.memory import memory_policies

    expected = expected.replace("{registered}", ", ".join(memory_policies()))  # other tests may register policies
    _one_line_error(capsys, ["train", "--config", PRESET, f"train.output_dir={tmp_path}", override], expected)


def test_bad_model_path(capsys, tmp_path):
    missing = tmp_path / "no" / "model"
    _one_line_error(
        capsys, ["check-consistency", "--model", str(missing)],
        f"mem1 check-consistency: model {str(missing)!r}: no such folder (expected a folder holding config.json and the weights)",
    )
    (tmp_path / "weights.bin").write_bytes(b"x")
    _one_line_error(
        capsys, ["check-consistency", "--model", str(tmp_path / "weights.bin")],
        f"mem1 check-consistency: model {str(tmp_path / 'weights.bin')!r} is a file; give the folder holding config.json and the weights",
    )
    (tmp_path / "empty").mkdir()
    assert main(["check-consistency", "--model", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mem1 check-consistency: cannot load model from the folder {tmp_path / 'empty'}: ")


@pytest.mark.parametrize("command", [["serve-policy", "--model", "tiny"], ["webshop", "serve"], ["serve-retriever"]])
@pytest.mark.parametrize("port", ["70000", "-1"])
def test_bad_port(capsys, command, port):
    name = " ".join(command[:2] if command[0] == "webshop" else command[:1])
    _one_line_error(capsys, [*command, "--port", port], f"mem1 {name}: port must be an integer from 0 to 65535 (0 picks a free one), got {port}")


def test_bad_threads(capsys):
    _one_line_error(capsys, ["check-consistency", "--threads", "0"], "mem1 check-consistency: --threads must be at least 1, got 0")


def test_eval_objectives_on_an_env_without_objectives(capsys, tmp_path):
    _one_line_error(
        capsys, ["eval", "--policy", "oracle", "--envs", "webshop_env/WebShop-v0", "--objectives", "2", "--out", str(tmp_path)],
        "mem1 eval: --objectives: webshop_env/WebShop-v0 has no objectives (no n_objectives argument); drop --objectives",
    )


def test_train_ends_with_where_and_what(capsys, tmp_path):
    out_dir = tmp_path / "run"
    assert main(["train", "--config", PRESET, f"train.output_dir={out_dir}", "train.iterations=1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (
        f"mem1 train: 1 PPO iterations of model 'tiny' on mem1_gym/MultiObjectiveQA-v0 (memory=mem1, 2 envs), "
        f"writing {out_dir} (1 CPU threads)"
    )
    assert lines[-2:] == [
        f"wrote checkpoint.json, config.yaml, tb, results.json in {out_dir}",
        "done: ppo finished (no held-out evaluation; set train.eval_after=true)",
    ]
