"""Tests of ``mem1 eval``: the grid, its metrics, resuming, and the report files."""

from __future__ import annotations

import csv

import pytest
from gymnasium.envs.registration import register, registry

from mem1_agent.evaluate import (
    COLUMNS,
    EvalConfig,
    OraclePolicy,
    RandomFormatPolicy,
    close_open_action,
    make_policy,
    markdown_table,
    read_results,
    run_eval,
    write_report,
)
from mem1_gym.protocol import ANSWER, CHECKPOINT_TAGS, PAPER_TAGS, SEARCH, Turn, format_turn
from mem1_gym.scoring import score_answers, split_answers
from mem1_gym.turn_env import Outcome, TurnEnv

LOOKUP_ENV = "eval_test/Lookup-v0"


class LookupEnv(TurnEnv):
    """A small multi-objective task: look up N keys one search at a time, then answer all values.

    Big enough to show the memory shapes (full context grows with the turns,
    mem1 stays flat) without a corpus or a retriever.
    """

    roles = (SEARCH, ANSWER)

    def __init__(self, n_objectives: int = 1, **kwargs):
        self.n_objectives = n_objectives
        kwargs.setdefault("max_turns", n_objectives + 2)
        super().__init__(**kwargs)

    def _new_task(self) -> str:
        keys = self.np_random.choice(1000, size=self.n_objectives, replace=False)
        self.table = {f"key{k}": f"value{int(self.np_random.integers(10_000))}" for k in keys}
        self.keys = list(self.table)
        self.answered: list[str] | None = None
        return "Look up the values of " + ", ".join(self.keys) + " and answer them in order, separated by ';'."

    def _execute(self, turn: Turn) -> Outcome:
        if turn.role == SEARCH:
            value = self.table.get(turn.argument)
            text = f"{turn.argument} is {value}. " + "Some filler text about it. " * 4 if value else "nothing found"
            return Outcome(info=text, valid=value is not None)
        self.answered = split_answers(turn.argument)
        em, _ = score_answers(self.answered, [[self.table[k]] for k in self.keys])
        return Outcome(info="answer received", reward=em, terminated=True)

    def _task_metrics(self) -> dict[str, float]:
        em, f1 = score_answers(self.answered or [], [[self.table[k]] for k in self.keys])
        return {"em": em, "f1": f1}

    def oracle_action(self) -> str:
        # The internal state carries every value found so far, as MEM1 would.
        found = [k for k in self.keys if any(f"{k} is " in s.text for s in self.transcript.segments)]
        known = {k: self.table[k] for k in found}
        state = "known: " + ", ".join(f"{k}={v}" for k, v in known.items())
        missing = [k for k in self.keys if k not in known]
        if missing:
            return format_turn(state, SEARCH, missing[0], self.tags)
        return format_turn(state, ANSWER, "; ".join(known[k] for k in self.keys), self.tags)


if LOOKUP_ENV not in registry:
    register(id=LOOKUP_ENV, entry_point=LookupEnv)


def _config(tmp_path, **kw) -> EvalConfig:
    base = dict(policy="oracle", envs=[LOOKUP_ENV], memories=["full", "mem1"], objectives=[1, 2, 4, 8],
                seeds=[0], episodes=2, batch_size=3, out_dir=str(tmp_path), progress=False)
    base.update(kw)
    return EvalConfig(**base)


def _by(rows, memory, n):
    (row,) = [r for r in rows if r["memory"] == memory and r["objectives"] == n]
    return row


def test_oracle_grid_solves_every_task_and_shows_the_memory_shapes(tmp_path):
    rows = run_eval(_config(tmp_path, memories=["full", "mem1", "window:1"]))
    assert len(rows) == 3 * 4
    for row in rows:
        assert row["em"] == row["objectives"]  # EM is the sum over objectives
        assert row["f1"] == row["objectives"]
        assert row["turns"] == row["objectives"] + 1
        assert row["invalid_rate"] == 0.0
        assert row["token_unit"] == "whitespace"
        assert row["inference_s"] >= 0.0
    full = [_by(rows, "full", n)["peak_tokens"] for n in (1, 2, 4, 8)]
    mem1 = [_by(rows, "mem1", n)["peak_tokens"] for n in (1, 2, 4, 8)]
    assert full == sorted(full) and full[-1] > 4 * full[0]  # the full context grows with the turns
    # mem1 grows only by what the IS and prompt must hold (a key/value per objective), far slower
    assert mem1[-1] - mem1[0] < (full[-1] - full[0]) / 3
    assert all(m <= f for m, f in zip(mem1, full))
    assert [_by(rows, "window:1", n)["peak_tokens"] for n in (1, 2, 4, 8)] == mem1
    dep_full = _by(rows, "full", 8)["dependency"]
    assert dep_full > _by(rows, "mem1", 8)["dependency"]


def test_oracle_on_the_qa_env(tmp_path):
    rows = run_eval(_config(tmp_path, envs=["mem1_gym/MultiObjectiveQA-v0"], memories=["full", "mem1"],
                            objectives=[1, 4, 8], episodes=2))
    assert [r["em"] for r in rows] == [1, 4, 8, 1, 4, 8] and all(r["invalid_rate"] == 0 for r in rows)
    full = [_by(rows, "full", n)["peak_tokens"] for n in (1, 4, 8)]
    mem1 = [_by(rows, "mem1", n)["peak_tokens"] for n in (1, 4, 8)]
    assert full[2] > 4 * full[0] and mem1[2] < 2 * mem1[0] and mem1[2] < full[2] / 3


def test_resume_skips_finished_cells(tmp_path):
    config = _config(tmp_path, objectives=[1, 2])
    first = run_eval(config)
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 4

    calls = []

    class CountingOracle(OraclePolicy):
        def act(self, observations, infos, envs):
            calls.append(len(observations))
            return super().act(observations, infos, envs)

    # Simulate a crash after the first cell: keep only its row, rerun with the wider grid.
    (tmp_path / "results.csv").write_text("\n".join(lines[:2]) + "\n")
    rows = run_eval(_config(tmp_path, objectives=[1, 2, 4]), policy=CountingOracle())
    assert len(rows) == 6 and len(read_results(tmp_path / "results.csv")) == 6
    # 5 cells were missing: full N=2, mem1 N=1, N=2, and the two N=4 cells; their turns, 2 episodes each
    assert sum(calls) == 2 * ((2 + 1) + (1 + 1) + (2 + 1) + 2 * (4 + 1))
    assert rows[0]["finished_at"] == first[0]["finished_at"]

    calls.clear()
    again = run_eval(_config(tmp_path, objectives=[1, 2, 4]), policy=CountingOracle())
    assert calls == [] and [r["em"] for r in again] == [r["em"] for r in rows]


def test_report_files(tmp_path):
    rows = run_eval(_config(tmp_path, objectives=[1, 2], seeds=[0, 1]))
    paths = write_report(rows, tmp_path)
    with open(paths["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        assert len(list(reader)) == 2 * 2 * 2
    md = paths["markdown"].read_text()
    assert "| oracle | Lookup-v0 | mem1 | 2 | 2.000 ± 0.00 |" in md
    assert "MEM1-7B (paper)" in md
    (plot,) = paths["plots"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_single_size_report_redrawn_from_the_csv(tmp_path):
    from mem1_agent.evaluate import load_results

    run_eval(_config(tmp_path, objectives=[4], memories=["full", "mem1", "window:2"], seeds=[0, 1]))
    rows = load_results(tmp_path)
    assert [(r["memory"], r["seed"]) for r in rows] == [(m, s) for m in ("full", "mem1", "window:2") for s in (0, 1)]
    (plot,) = write_report(rows, tmp_path)["plots"]  # one task size: bars per memory policy
    assert plot.stat().st_size > 10_000
    assert "| oracle | Lookup-v0 | window:2 | 4 | 4.000 ± 0.00 |" in (tmp_path / "results.md").read_text()


def test_corrupt_results_file_is_named(tmp_path):
    run_eval(_config(tmp_path, objectives=[1]))
    path = tmp_path / "results.csv"
    path.write_text(path.read_text() + "oracle,eval_test/Lookup-v0,full\n")
    with pytest.raises(ValueError, match=r"results\.csv, line 4"):
        run_eval(_config(tmp_path, objectives=[1]))
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not the results header"):
        read_results(path)


def test_random_policy_is_well_formed_and_seeded(tmp_path):
    config = _config(tmp_path, policy="random", objectives=[2], memories=["mem1"], episodes=3)
    rows = run_eval(config)
    assert isinstance(make_policy(config), RandomFormatPolicy)
    # Well-formed turns whose searches miss are refused by the env as invalid; answers are wrong.
    assert rows[0]["em"] == 0.0 and rows[0]["invalid_rate"] == 0.5  # seeded: half its turns are refused searches
    again = run_eval(_config(tmp_path / "again", policy="random", objectives=[2], memories=["mem1"], episodes=3,
                             batch_size=1))
    assert again[0]["peak_tokens"] == rows[0]["peak_tokens"] and again[0]["turns"] == rows[0]["turns"]


def test_checkpoint_tags_pass_through(tmp_path):
    rows = run_eval(_config(tmp_path, objectives=[2], memories=["mem1"], tags="checkpoint"))
    assert rows[0]["em"] == 2 and rows[0]["tags"] == "checkpoint"


def test_close_open_action():
    assert close_open_action("<IS> x </IS><query> a b", PAPER_TAGS) == "<IS> x </IS><query> a b</query>"
    assert close_open_action("<think> x </think><answer> a", CHECKPOINT_TAGS) == "<think> x </think><answer> a</answer>"
    assert close_open_action("<IS> x </IS><query> a </query>", PAPER_TAGS) == "<IS> x </IS><query> a </query>"
    assert close_open_action("no tags", PAPER_TAGS) == "no tags"


def test_bad_settings_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown env"):
        run_eval(_config(tmp_path, envs=["nope/Nothing-v0"]))
    with pytest.raises(ValueError, match="cannot make eval_test/Lookup-v0 with .*colour"):
        run_eval(_config(tmp_path, env_kwargs={"colour": "blue"}))
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy(_config(tmp_path, policy="bogus"))
    with pytest.raises(ValueError, match="openai:BASE_URL#MODEL"):
        make_policy(_config(tmp_path, policy="openai:http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="episodes"):
        _config(tmp_path, episodes=0)


def test_cli_runs_and_prints_the_table(tmp_path, capsys):
    from mem1_agent.cli import main

    code = main(["eval", "--policy", "oracle", "--envs", LOOKUP_ENV, "--memory", "full,mem1", "--objectives", "1,2",
                 "--seeds", "0", "--episodes", "1", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| oracle | Lookup-v0 | full | 2 |" in out and (tmp_path / "results.md").exists()
    assert main(["eval", "--envs", "nope/Nothing-v0", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert len(read_results(tmp_path / "results.csv")) == 4


@pytest.mark.slow  # loads transformers and a (tiny) model
def test_hf_policy_generates_token_level_turns(tmp_path):
    # A random tiny model: the run exercises LMPolicy generation over TokenizedEnv, not the scores.
    config = _config(tmp_path, policy="hf:tiny", objectives=[2], memories=["mem1", "full"], episodes=2,
                     batch_size=4, max_new_tokens=8, device="cpu")
    rows = run_eval(config)
    assert [r["policy"] for r in rows] == ["hf:tiny"] * 2
    for row in rows:
        assert row["turns"] == row["objectives"] + 2  # no valid answer: the turn limit ends it
        assert row["token_unit"] != "whitespace" and row["peak_tokens"] > 0 and row["inference_s"] > 0
    assert _by(rows, "full", 2)["peak_tokens"] > _by(rows, "mem1", 2)["peak_tokens"]


def test_config_file_overrides_and_flags(tmp_path):
    from mem1_agent.evaluate import config_from_args

    path = tmp_path / "eval.yaml"
    path.write_text(f"policy: random\nenvs: [{LOOKUP_ENV}]\nepisodes: 2\nmemories: [full]\n")
    config = config_from_args(["--config", str(path), "episodes=5", "seeds=[3]", "--memory", "mem1,window:2"])
    assert (config.policy, config.episodes, config.seeds, config.memories) == ("random", 5, [3], ["mem1", "window:2"])
    assert config.objectives == [1, 2, 4, 8, 16]  # untouched defaults stay
    for bad, message in ((["episodes=x"], "expected int"), (["nokey=1"], "unknown key nokey"),
                         (["episodes=0"], "at least 1"), (["--config", str(tmp_path / "none.yaml")], "cannot read")):
        with pytest.raises(ValueError, match=message):
            config_from_args(bad)


def test_example_config_loads():
    from pathlib import Path

    from mem1_agent.evaluate import config_from_args

    path = Path(__file__).resolve().parents[1] / "examples" / "configs" / "eval_oracle_qa.yaml"
    config = config_from_args(["--config", str(path)])
    assert config.memories == ["full", "mem1", "window:1"] and config.objectives == [1, 2, 4, 8, 16]


def test_eval_with_the_retriever_down_reports_tool_errors(tmp_path, capsys):
    """EM 0 because the retriever is down must not read as the agent failing: a column and a warning say so."""
    import socket

    from mem1_agent.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    kwargs = f'{{"retriever": "{dead}", "retriever_retries": 0, "retriever_timeout": 1, "dataset_size": 300}}'
    code = main(["eval", "--policy", "oracle", "--envs", "mem1_gym/MultiObjectiveQA-v0", "--memory", "mem1",
                 "--objectives", "1", "--seeds", "0", "--episodes", "2", "--env-kwargs", kwargs,
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "| tool errors/ep |" in captured.out
    assert "warning: tool calls failed" in captured.err and "MultiObjectiveQA-v0 mem1 N=1" in captured.err
    (row,) = read_results(tmp_path / "results.csv")
    assert float(row["em"]) == 0.0 and float(row["tool_errors"]) > 0
    # A run whose tools work has a zero count and no warning.
    main(["eval", "--policy", "oracle", "--envs", "mem1_gym/MultiObjectiveQA-v0", "--memory", "mem1", "--objectives", "1",
          "--seeds", "0", "--episodes", "1", "--env-kwargs", '{"dataset_size": 300}', "--out", str(tmp_path / "ok"),
          "--no-progress"])
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert [float(r["tool_errors"]) for r in read_results(tmp_path / "ok" / "results.csv")] == [0.0]
