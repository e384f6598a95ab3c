"""Exact match and F1 with the usual normalisation."""

from mem1_gym.scoring import exact_match, f1_score, normalize_answer, score_answers, split_answers


def test_normalisation():
    assert normalize_answer("  The Eiffel-Tower!  ") == "eiffeltower"
    assert normalize_answer("An apple a day") == "apple day"


def test_em_any_alias():
    assert exact_match("the USA", ["United States", "USA"]) == 1.0
    assert exact_match("Canada", ["United States"]) == 0.0


def test_f1_partial():
    assert f1_score("New York City", ["New York"]) == 0.8
    assert f1_score("", ["x"]) == 0.0


def test_fewer_or_more_answers_score_what_matches():
    golds = [["a1"], ["b2"], ["c3"]]
    assert score_answers(split_answers("a1; wrong"), golds)[0] == 1.0
    assert score_answers(split_answers("a1; b2; c3; extra"), golds)[0] == 3.0
    assert split_answers("x;;y") == ["x", "", "y"]
