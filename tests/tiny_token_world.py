"""Offline fixtures for the token-level tests: a small deterministic env, the tiny tokenizer and model.

Nothing here downloads anything: the tokenizer and the random Llama come from
:mod:`mem1_agent.models` (trained / initialised in-process).
"""

from __future__ import annotations

from pathlib import Path

from mem1_gym.protocol import ANSWER, SEARCH, Turn, format_turn
from mem1_gym.turn_env import Outcome, TurnEnv


class SecretNumberEnv(TurnEnv):
    """Find a hidden number: search reveals it (with a clue count), answering it exactly scores 1.

    Deterministic under ``reset(seed=...)``; several searches are allowed so
    episodes can run many turns.
    """

    roles = (SEARCH, ANSWER)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_turns", 6)
        super().__init__(**kwargs)
        self.secret = 0
        self.searches = 0
        self.answer_given: str | None = None

    def _new_task(self) -> str:
        self.secret = int(self.np_random.integers(10, 100))
        self.searches = 0
        self.answer_given = None
        return (
            "Find the secret number. Search with <query> secret </query>, "
            "then answer it with <answer> the number </answer>."
        )

    def _execute(self, turn: Turn) -> Outcome:
        if turn.role == SEARCH:
            self.searches += 1
            return Outcome(info=f"clue {self.searches}: the secret number is {self.secret}.")
        self.answer_given = turn.argument
        return Outcome(info="answer received.", reward=float(turn.argument == str(self.secret)), terminated=True)

    def _task_metrics(self) -> dict[str, float]:
        return {"em": float(self.answer_given == str(self.secret))}

    def oracle_action(self) -> str:
        if self.searches == 0:
            return format_turn("I need the secret number.", SEARCH, "secret", self.tags)
        return format_turn(f"The secret is {self.secret}.", ANSWER, str(self.secret), self.tags)


def build_tiny_tokenizer(with_chat_template: bool = True):
    """The project's tiny byte-level BPE tokenizer (ChatML template), optionally without its template."""
    from mem1_agent.models import tiny_tokenizer

    tok = tiny_tokenizer()
    if not with_chat_template:
        tok.chat_template = None
    return tok


def build_tiny_model_dir(path: Path, tokenizer) -> Path:
    """Save the project's random 2-layer Llama (sized to ``tokenizer``) and the tokenizer to ``path``."""
    from mem1_agent.models import tiny_model

    tiny_model("llama", seed=0, vocab_size=len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def prompt_tokens(tokenizer) -> int:
    """Length of SecretNumberEnv's chat-templated prompt under ``tokenizer`` (the same for every seed)."""
    from mem1_gym.wrappers import TokenizedEnv

    _, info = TokenizedEnv(SecretNumberEnv(), tokenizer, max_length=10_000).reset(seed=0)
    return len(info["input_ids"])
