"""A multi-objective QA environment whose oracle answers too early, with a set probability.

Supervised fine-tuning on a perfect oracle leaves reinforcement learning nothing to improve
that imitation could not. :class:`PrematureAnswerQAEnv` is ``MultiObjectiveQA`` unchanged
(same tasks, same observations, same EM reward) except for its :meth:`oracle_action`: in a
share ``oracle_error`` of the episodes the demonstrator, once a single question is left and it
has not started on it, stops and answers, writing ``unknown`` for that question.

With ``oracle_error`` above 0.5 the early answer is the demonstrations' most likely turn in
that situation, so a model that imitates them and decodes greedily answers early too and
loses that question: imitation has a ceiling (about ``(N - 1) / N`` of the EM at N
objectives). The right turn (search on) is still demonstrated in the other episodes, so a
policy trained on the EM reward can learn to prefer it and pass the ceiling.
"""

from __future__ import annotations

from .protocol import ANSWER, format_turn
from .qa_env import MultiObjectiveQAEnv


class PrematureAnswerQAEnv(MultiObjectiveQAEnv):
    """``MultiObjectiveQA`` whose oracle answers before the last question in a share of episodes.

    Args:
        oracle_error: probability, drawn once per episode at reset, that the oracle answers
            as soon as one question is left unstarted (0 gives the perfect oracle).
        The remaining arguments are :class:`~mem1_gym.qa_env.MultiObjectiveQAEnv`'s.
    """

    def __init__(self, *args, oracle_error: float = 0.6, **kwargs):
        if not 0.0 <= oracle_error <= 1.0:
            raise ValueError(f"oracle_error must be a probability in [0, 1], got {oracle_error!r}")
        super().__init__(*args, **kwargs)
        self.oracle_error = float(oracle_error)
        self._answers_early = False

    def _new_task(self) -> str:
        prompt = super()._new_task()
        # Drawn after the task, so the task of a seed is the base environment's.
        self._answers_early = bool(self.np_random.random() < self.oracle_error)
        return prompt

    def oracle_action(self) -> str:
        """The perfect oracle's turn, or, in an erring episode with one question left unstarted, an answer."""
        action = super().oracle_action()
        assert self.task is not None
        items = self.task.items
        pending = [i for i, item in enumerate(items) if self._hops_done(item) < len(self._gold_queries(item))]
        if not self._answers_early or len(pending) != 1 or self._hops_done(items[pending[0]]) > 0:
            return action
        known = "; ".join(f"Q{i}: {item.answers[0]}" for i, item in enumerate(items, 1) if i - 1 != pending[0])
        answers = "; ".join("unknown" if i == pending[0] else item.answers[0] for i, item in enumerate(items))
        return format_turn(f"All answers found. {known}", ANSWER, answers, self.tags)
