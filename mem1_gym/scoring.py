"""Answer scoring: exact match and token F1 with the usual QA normalisation.

Normalisation is the SQuAD/FlashRAG one: lowercase, drop punctuation, drop the
articles a/an/the, collapse whitespace. Any gold alias counts.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold alias."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """Best token-level F1 of the prediction against the gold aliases."""
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        gold_tokens = normalize_answer(gold).split()
        common = Counter(pred_tokens) & Counter(gold_tokens)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred_tokens), same / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def split_answers(text: str) -> list[str]:
    """Split ``a1; a2; ...`` into stripped answers (empty parts kept, so positions stay aligned)."""
    return [part.strip() for part in text.split(";")]


def score_answers(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Sum of EM and sum of F1 over objectives, matched by position.

    Missing predictions score 0; extra ones are ignored.
    """
    em = f1 = 0.0
    for pred, gold in zip(predictions, golds):
        em += exact_match(pred, gold)
        f1 += f1_score(pred, gold)
    return em, f1
