"""A tiny deterministic MEM1 task for the consistency check, SFT tests and benchmarks.

``KeyLookupEnv`` draws a few keys from a fixed table; the agent looks each one
up with ``<query> key </query>`` and answers all values in order with
``<answer> v1; v2 </answer>``. It needs no corpus, no retriever and no data
files, so ``mem1 check-consistency`` and the stitched-trajectory tests run in
seconds anywhere. It is a real :class:`~mem1_gym.turn_env.TurnEnv` (same turn
protocol, memory policies and info keys as the QA environments), not a stand-in:
under ``mem1`` the agent must carry the values it found in its internal state.
"""

from __future__ import annotations

import gymnasium as gym

from mem1_gym.protocol import ANSWER, SEARCH, Turn, format_turn
from mem1_gym.turn_env import Outcome, TurnEnv

#: The lookup table (keys are short words, values small numbers).
TABLE: dict[str, str] = {
    "alpha": "17", "beta": "42", "gamma": "3", "delta": "88", "epsilon": "5",
    "zeta": "61", "eta": "29", "theta": "70", "iota": "11", "kappa": "94",
}


class KeyLookupEnv(TurnEnv):
    """Look up ``n_keys`` keys, then answer their values in order (reward: number correct).

    Args:
        n_keys: keys per task.
        **kwargs: :class:`~mem1_gym.turn_env.TurnEnv` arguments (``memory``, ``max_turns``, ...).
    """

    roles = (SEARCH, ANSWER)

    def __init__(self, n_keys: int = 2, **kwargs):
        kwargs.setdefault("max_turns", n_keys + 2)
        super().__init__(**kwargs)
        if not 1 <= n_keys <= len(TABLE):
            raise ValueError(f"n_keys must be between 1 and {len(TABLE)}, got {n_keys}")
        self.n_keys = int(n_keys)
        self.keys: list[str] = []
        self.found: dict[str, str] = {}
        self.correct = 0

    def _new_task(self) -> str:
        names = list(TABLE)
        order = self.np_random.permutation(len(names))[: self.n_keys]
        self.keys = [names[i] for i in order]
        self.found = {}
        self.correct = 0
        return (
            f"Find the values of these keys, in order: {', '.join(self.keys)}.\n"
            f"Each turn write <{self.tags.state}> what you know </{self.tags.state}> and then one action: "
            f"<{self.tags.tag(SEARCH)}> key </{self.tags.tag(SEARCH)}> or "
            f"<{self.tags.tag(ANSWER)}> value1; value2 </{self.tags.tag(ANSWER)}>."
        )

    def _execute(self, turn: Turn) -> Outcome:
        arg = (turn.argument or "").strip().lower()
        if turn.role == SEARCH:
            if arg in TABLE:
                self.found[arg] = TABLE[arg]
                return Outcome(info=f"{arg} = {TABLE[arg]}")
            return Outcome(info=f"no key named {arg!r}", valid=False)
        values = [v.strip() for v in arg.split(";")]
        self.correct = sum(1 for k, v in zip(self.keys, values) if TABLE[k] == v)
        return Outcome(info=f"{self.correct} of {self.n_keys} correct", reward=float(self.correct), terminated=True)

    def _task_metrics(self) -> dict[str, float]:
        return {"em": float(self.correct), "reward": float(self.correct)}

    def oracle_action(self) -> str:
        """Query the next key not yet found; answer once all are known. The state lists what was found."""
        known = "; ".join(f"{k} = {self.found[k]}" for k in self.keys if k in self.found) or "nothing yet"
        missing = [k for k in self.keys if k not in self.found]
        if missing:
            return format_turn(f"found: {known}", SEARCH, missing[0], self.tags)
        return format_turn(f"found: {known}", ANSWER, "; ".join(TABLE[k] for k in self.keys), self.tags)


#: Gymnasium id of the toy task (registered when this module is imported).
TOY_ENV_ID = "mem1_agent/KeyLookup-v0"
if TOY_ENV_ID not in gym.registry:
    gym.register(id=TOY_ENV_ID, entry_point="mem1_agent.toy_task:KeyLookupEnv")


def make_env(env_id: str = "toy", **kwargs) -> gym.Env:
    """A MEM1 text environment by id: ``toy`` (this task), ``qa`` (``mem1_gym/MultiObjectiveQA-v0``) or any registered id.

    ``kwargs`` go to the environment (``memory``, ``max_turns``, ``seed``, ...).
    The returned env is unwrapped of Gymnasium's checkers so token wrappers see the TurnEnv API directly.
    """
    import mem1_gym  # noqa: F401  (registers the environments)

    name = {"toy": TOY_ENV_ID, "qa": "mem1_gym/MultiObjectiveQA-v0"}.get(env_id, env_id)
    return gym.make(name, disable_env_checker=True, **kwargs)
