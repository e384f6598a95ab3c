"""``mem1_gym/MultiObjectiveQA-v0``: N questions in one task, answered by searching a corpus.

The paper's multi-objective task: N single questions are interleaved into one
prompt; the agent searches (``<query>``), reads the top-k passages the
environment returns in ``<info>``, and finally answers all N at once
(``<answer> a1; a2; ... </answer>``). The reward is the sum of exact matches
over objectives (0..N, as the paper reports EM); the F1 sum is reported too.

Because the memory policy prunes older turns, an agent that does not carry its
findings forward in its internal state forgets them: the task measures exactly
the consolidation MEM1 trains.
"""

from __future__ import annotations

from typing import Any, Sequence

from .context import TokenCounter
from .data import QADataset, QAItem, load_dataset
from .data.compose import MultiObjectiveTask, format_questions, sample_task
from .memory import MemoryPolicy
from .protocol import ANSWER, SEARCH, TagSet, Turn, format_info, format_turn, resolve_format
from .retrieval import Retriever, format_passages, make_retriever
from .scoring import normalize_answer, score_answers, split_answers
from .turn_env import MAX_OBSERVATION_CHARS, Outcome, TurnEnv
from .turn_rewards import TurnRewardSpec

PROMPT_TEMPLATE = """\
Answer the following {n} question(s) by searching a knowledge base.
Every turn, first write your internal state inside <{state}> </{state}>: everything you have found so far that you \
still need, and your plan. Older turns are removed from your context, so the internal state is your only memory.
Then write exactly one action:
<{search}> keywords </{search}> searches the knowledge base; the results come back inside <{info}> </{info}>.
<{answer}> answer 1; answer 2; ... </{answer}> answers all questions at once, in order, separated by ';'. \
This ends the task.
You have at most {max_turns} turns.
Questions:
{questions}
"""


class MultiObjectiveQAEnv(TurnEnv):
    """Multi-objective multi-hop QA with retrieval (see the module docstring).

    Args:
        n_objectives: questions per episode (1 to at least 32).
        dataset: ``"fictional"`` (default), ``"wiki-vital"``, a FlashRAG JSONL / MEM1 parquet path
            of questions (with ``corpus=``), or a :class:`~mem1_gym.data.QADataset`.
        corpus: the corpus JSONL (``id``, ``contents``) a question file is answered from.
        split: which split the questions are drawn from: ``train`` or ``test`` (a seeded 90/10
            split, see :func:`~mem1_gym.data.load_dataset`), or ``all`` for a question file.
        retriever: backend spec (``bm25s``, ``rank_bm25``, an ``http://`` server URL) or a retriever.
        retriever_timeout: seconds per request to an ``http://`` retriever (its default, 30, when None).
        retriever_retries: extra attempts after a failed request (default 3); a search blocks at
            most about ``(retries + 1) * timeout`` seconds before the agent reads "Search failed".
        topk: passages returned per search.
        max_turns: turn limit; by default ``3 * n_objectives + 2`` (two hops and an answer each, and slack).
        dataset_seed: seed of the generated dataset (a different world per seed).
        dataset_size: passages in a generated dataset (its default when None).
        max_query_chars: longer queries are refused with a message.
        format: observation format, ``paper``, ``search-r1`` or ``mem1`` (see
            :data:`~mem1_gym.protocol.OBSERVATION_FORMATS`); by default ``search-r1`` with
            ``tags="checkpoint"``, else ``paper``.
        The remaining arguments are :class:`~mem1_gym.turn_env.TurnEnv`'s.

    Metrics: ``em``, ``f1``, ``answered``, ``n_objectives`` and ``tool_errors``, the searches that
    failed on the backend's side (a retriever that is down), so that an EM of 0 caused by the
    infrastructure is told apart from one the agent earned.
    """

    roles = (SEARCH, ANSWER)
    #: The task prompt, formatted with the tag name of every role; subclasses with more tools replace it.
    prompt_template: str = PROMPT_TEMPLATE

    def __init__(
        self,
        n_objectives: int = 1,
        memory: str | MemoryPolicy = "mem1",
        dataset: str | QADataset = "fictional",
        split: str = "train",
        retriever: str | Retriever = "bm25s",
        corpus: str | None = None,
        retriever_timeout: float | None = None,
        retriever_retries: int | None = None,
        topk: int = 3,
        max_turns: int | None = None,
        tags: str | TagSet = "paper",
        format_penalty: float = 0.0,
        dataset_seed: int = 0,
        dataset_size: int | None = None,
        max_query_chars: int = 1_000,
        format: str | None = None,
        max_observation_chars: int = MAX_OBSERVATION_CHARS,
        token_counter: TokenCounter | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        turn_reward: TurnRewardSpec = None,
    ):
        if not isinstance(n_objectives, int) or n_objectives < 1:
            raise ValueError(f"n_objectives must be a positive integer, got {n_objectives!r}")
        if topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        super().__init__(
            memory=memory,
            tags=tags,
            max_turns=max_turns if max_turns is not None else 3 * n_objectives + 2,
            format_penalty=format_penalty,
            max_observation_chars=max_observation_chars,
            token_counter=token_counter,
            seed=seed,
            render_mode=render_mode,
            turn_reward=turn_reward,
        )
        self.format = resolve_format(format, self.tags)
        self.n_objectives = n_objectives
        self.topk = int(topk)
        self.max_query_chars = int(max_query_chars)
        self.dataset = load_dataset(dataset, seed=dataset_seed, size=dataset_size, corpus=corpus)
        self.items: list[QAItem] = self.dataset.split(split)
        if n_objectives > len(self.items):
            raise ValueError(
                f"n_objectives={n_objectives} but split {split!r} of {self.dataset.name!r} has only {len(self.items)} questions"
            )
        options = {k: v for k, v in (("timeout", retriever_timeout), ("retries", retriever_retries)) if v is not None}
        self.retriever = make_retriever(retriever, self.dataset.corpus, self.dataset.fingerprint, **options)
        self.task: MultiObjectiveTask | None = None
        self._searched: set[str] = set()
        self._em = self._f1 = 0.0
        self._answered = False
        self.tool_errors = 0

    # -- TurnEnv hooks ----------------------------------------------------------

    def _new_task(self) -> str:
        self.task = sample_task(self.items, self.n_objectives, self.np_random)
        self._searched = set()
        self._em = self._f1 = 0.0
        self._answered = False
        self.tool_errors = 0
        t = self.tags
        return self.prompt_template.format(
            n=self.n_objectives,
            state=t.state,
            info=t.info,
            max_turns=self.max_turns,
            questions=format_questions(self.task),
            **{role: t.tag(role) for role in self.roles},  # {search}, {answer}, and e.g. {open} in subclasses
        )

    def _execute(self, turn: Turn) -> Outcome:
        assert self.task is not None and turn.argument is not None
        if turn.role == SEARCH:
            return self._search(turn.argument)
        predictions = split_answers(turn.argument)
        self._em, self._f1 = score_answers(predictions, self.task.answers)
        self._answered = True
        return Outcome(
            info=f"Answers received: {len(predictions)} for {self.n_objectives} question(s).",
            reward=self._em,
            terminated=True,
            extra={"em": self._em, "f1": self._f1},
        )

    def _format_info(self, text: str) -> str:
        return format_info(text, self.tags, self.format, turns_left=self.max_turns - self.turn)

    def _task_metrics(self) -> dict[str, float]:
        return {
            "em": self._em,
            "f1": self._f1,
            "n_objectives": self.n_objectives,
            "answered": float(self._answered),
            "tool_errors": self.tool_errors,
        }

    def _search(self, query: str) -> Outcome:
        if not query:
            return Outcome(info="Invalid turn: the query is empty; write search keywords.", valid=False, reward=-self.format_penalty)
        if len(query) > self.max_query_chars:
            return Outcome(
                info=f"Invalid turn: the query is {len(query)} characters long; the limit is {self.max_query_chars}.",
                valid=False,
                reward=-self.format_penalty,
            )
        try:
            hits = self.retriever.search([query], self.topk)[0]
        except Exception as err:  # a remote retriever may be down; the agent must hear about it, not crash
            self.tool_errors += 1
            return Outcome(info=f"Search failed: {err}", extra={"search_error": str(err)})
        self._searched.add(normalize_answer(query))
        return Outcome(info=format_passages(hits, self.format), extra={"hits": [h.id for h in hits]})

    # -- oracle -----------------------------------------------------------------

    def _hops_done(self, item: QAItem) -> int:
        queries = self._gold_queries(item)
        done = 0
        while done < len(queries) and normalize_answer(queries[done]) in self._searched:
            done += 1
        return done

    @staticmethod
    def _gold_queries(item: QAItem) -> tuple[str, ...]:
        # External datasets carry no gold queries: the question itself is the expert's best search.
        return item.gold_queries or (item.question,)

    def oracle_action(self) -> str:
        """Search each objective's gold queries in order, remember every answer found, then answer all.

        The internal state lists what is known so far, so the oracle solves the
        task under every memory policy, ``mem1`` included.
        """
        if self.task is None:
            raise RuntimeError("call reset() before oracle_action()")
        # Only what was found goes into the state: it stays short at large N, as a consolidated memory should.
        known: list[str] = []
        next_query: str | None = None
        for i, item in enumerate(self.task.items, 1):
            queries = self._gold_queries(item)
            done = self._hops_done(item)
            if done == len(queries):
                known.append(f"Q{i}: {item.answers[0]}")
            elif next_query is None:
                next_query = queries[done]
        found = "; ".join(known) if known else "nothing yet"
        if next_query is None:
            state = f"All answers found. {found}"
            return format_turn(state, ANSWER, "; ".join(item.answers[0] for item in self.task.items), self.tags)
        state = f"Found: {found}. Next: search {next_query}"
        return format_turn(state, SEARCH, next_query, self.tags)

    def task_info(self) -> dict[str, Any]:
        """The hidden task (questions and gold answers), for analysis and logging."""
        if self.task is None:
            return {}
        return {"questions": list(self.task.questions), "answers": [list(a) for a in self.task.answers]}
