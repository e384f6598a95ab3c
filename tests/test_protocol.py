"""The turn grammar: parsing, formatting, tag sets, and malformed turns."""

import pytest

from mem1_gym.protocol import (
    ACTION,
    ANSWER,
    CHECKPOINT_TAGS,
    PAPER_TAGS,
    SEARCH,
    format_info,
    format_turn,
    get_tag_set,
    parse_turn,
)


def test_round_trip_paper_tags():
    text = format_turn("found Paris", SEARCH, "capital of France", PAPER_TAGS)
    assert text == "<IS> found Paris </IS><query> capital of France </query>"
    turn = parse_turn(text)
    assert turn.valid and turn.state == "found Paris" and turn.role == SEARCH and turn.argument == "capital of France"


def test_checkpoint_tags_parse_released_format():
    text = "<think> plan </think>\n<search> who wrote Hamlet </search>"
    turn = parse_turn(text, CHECKPOINT_TAGS)
    assert (turn.role, turn.argument) == (SEARCH, "who wrote Hamlet")
    # Paper tags are not accepted under the checkpoint tag set.
    assert not parse_turn("<IS> x </IS><query> q </query>", CHECKPOINT_TAGS).valid
    assert get_tag_set("checkpoint") is CHECKPOINT_TAGS
    with pytest.raises(ValueError, match="unknown tag set"):
        get_tag_set("nope")


def test_text_after_closing_tag_is_ignored_and_first_action_wins():
    turn = parse_turn("<IS> s </IS><answer> a; b </answer> trailing <query> x </query>")
    assert (turn.role, turn.argument) == (ANSWER, "a; b")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("<query> q </query>", "missing internal state"),
        ("<IS> s </IS>", "missing action"),
        ("<IS> a </IS><IS> b </IS><query> q </query>", "exactly one"),
        ("<IS> s </IS><action> click[x] </action>", "<action> is not an action here"),
        ("<IS> s <query> q </query>", "missing internal state"),
        ("", "missing internal state"),
    ],
)
def test_malformed_turns_explain_themselves(text, fragment):
    turn = parse_turn(text)
    assert not turn.valid
    assert fragment in turn.error


def test_non_text_is_refused_without_raising():
    for value in (None, 3, b"<IS>x</IS>", ["a"]):
        assert not parse_turn(value).valid


def test_roles_restrict_actions():
    assert parse_turn("<IS> s </IS><action> click[buy now] </action>", roles=(ACTION,)).role == ACTION


def test_format_info_wraps_on_own_lines():
    assert format_info("hello", CHECKPOINT_TAGS) == "\n<information> hello </information>\n"


def test_observation_format_follows_the_tags_unless_given():
    from mem1_gym.protocol import resolve_format

    assert (resolve_format(None, "paper"), resolve_format(None, "checkpoint")) == ("paper", "search-r1")
    assert resolve_format("mem1", "paper") == "mem1"
    with pytest.raises(ValueError, match="observation format"):
        resolve_format("searchr1", "paper")


def test_search_r1_and_mem1_information_blocks():
    # Search-R1: '\n\n<information>{results.strip()}</information>\n\n'; MEM1's trainer puts its hint first.
    text = 'Doc 1(Title: "A") a\n'
    assert format_info(text, CHECKPOINT_TAGS, "search-r1") == '\n\n<information>Doc 1(Title: "A") a</information>\n\n'
    assert format_info(text, CHECKPOINT_TAGS, "mem1", turns_left=3) == (
        '\n\n<information>[HINT]You have 3 turns left.[/HINT]\n\nDoc 1(Title: "A") a</information>\n\n')
    assert format_info(text, CHECKPOINT_TAGS, "mem1", turns_left=1).startswith(
        "\n\n<information>[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]\n\n")
