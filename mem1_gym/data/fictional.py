"""A seeded generator of a fictional multi-hop knowledge base.

Every name in a world is invented from syllables, so a model cannot answer
from pretraining: it has to search. A world has four kinds of entity:

* cities (province, year settled),
* organisations (kind, founder, founding year, headquarters city),
* people (birth year and city, occupation, employer; some also died somewhere),
* works (genre, author, publication year).

Each entity yields one passage (people who died yield a second one), titled
with the entity's name and stating its facts in plain sentences. Each fact
sentence carries a keyword (``born``, ``occupation``, ``employed``, ``founded``, ``settled``,
``province``, ``headquarters``, ``written``, ``published``, ``died``) that no
other sentence about the same entity uses, so a query of *subject name +
keyword* finds the passage that states the fact. That is what the questions'
``gold_queries`` are: one query per hop; the second hop names the bridge entity.

Uniqueness and retrieval: every city, organisation, work and person family
name owns a distinct invented token, drawn without replacement from a
mixed-radix syllable space and decoded from its index. The syllable endings
are chosen so the English Snowball stemmer leaves every token unchanged, so
distinct names stay distinct after the retriever's analysis. Given names end
in a vowel and family tokens in a consonant, so the two never collide.

Generation is a single pass with numpy drawing all attributes up front; 100k
passages take under a second of CPU and 1M about five seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .schema import Passage, QADataset, QAItem
from .splits import split_train_test

#: Bump when the generated content changes, so cached indexes are rebuilt.
GENERATOR_VERSION = "fictional-1"

# Syllable inventories: a token is onset + one to three middles + a consonant
# final. The finals are consonants that no Snowball suffix rule removes
# (checked in tests: every generated token stems to itself).
_ONSETS = (
    "zor kep val quel tav bril dra fen gor hal jor kal lum mor nev orn pel rav sel tor ulm vor wex yor "
    "zan bax cor dov esk fal gim hes ith jas kov lir mab nox oph pry quo rik syl tam vex wyn xan brak"
).split()
_MIDDLES = (
    "ra li no ve ta mi ko su de ri na lo vi za pe ru gi ba fo ke du me so ga po ne bi ha zu to ma lu ti fa "
    "ro ku sa do"
).split()
_FINALS = "k x th n m v b f p rn sk nth rk".split()
# Given names end in a vowel; drawn with replacement (many people share one).
_GIVEN_ENDINGS = ("ra", "na", "lo", "va", "ro", "la")

_OCCUPATIONS = (
    "cartographer glassblower astronomer shipwright apothecary clockmaker weaver stonemason botanist "
    "archivist falconer cooper tanner luthier engraver beekeeper surveyor lamplighter bookbinder "
    "ropemaker chandler herbalist navigator mapmaker potter silversmith tailor brewer miller scribe "
    "translator physician architect composer sculptor painter jeweller blacksmith vintner"
).split()
# Organisation name noun -> what such an organisation is.
_ORGS = (
    ("Institute", "a research institute"),
    ("Guild", "a craft guild"),
    ("Company", "a trading company"),
    ("Society", "a scholarly society"),
    ("Academy", "a learned academy"),
    ("Foundry", "an iron foundry"),
    ("Observatory", "an astronomical observatory"),
    ("Bank", "a merchant bank"),
    ("Conservatory", "a music conservatory"),
    ("Library", "a public library"),
    ("Press", "a printing house"),
    ("Workshop", "an engineering workshop"),
    ("Mint", "a coin mint"),
    ("Shipyard", "a shipbuilding yard"),
    ("Exchange", "a commodities exchange"),
    ("Lodge", "a fraternal lodge"),
    ("Hospital", "a charitable hospital"),
    ("Theatre", "a playhouse"),
)
_WORK_NOUNS = (
    "Codex Chronicle Saga Ballad Treatise Atlas Cantata Almanac Elegy Requiem Sonata Fable Gazette Canticle "
    "Testament Ledger Compendium Nocturne Lament Herbal"
).split()
_GENRES = (
    "epic poem",
    "travel memoir",
    "treatise on astronomy",
    "comic opera",
    "collection of fables",
    "historical chronicle",
    "book of recipes",
    "naval handbook",
    "philosophical dialogue",
    "tragedy in verse",
    "book of maps",
    "herbal encyclopedia",
)


def _token_tiers() -> list[tuple[int, int]]:
    """(middle count, how many tokens that length allows) for tokens of one, two and three middles."""
    o, m, f = len(_ONSETS), len(_MIDDLES), len(_FINALS)
    return [(1, o * m * f), (2, o * m * m * f), (3, o * m * m * m * f)]


def _decode_token(index: int) -> str:
    """The invented token with mixed-radix ``index`` (an injective map, so distinct indexes give distinct names)."""
    for n_middles, size in _token_tiers():
        if index < size:
            break
        index -= size
    else:
        raise ValueError("token index beyond the syllable space")
    index, final = divmod(index, len(_FINALS))
    middles = []
    for _ in range(n_middles):
        index, mid = divmod(index, len(_MIDDLES))
        middles.append(_MIDDLES[mid])
    return (_ONSETS[index] + "".join(middles) + _FINALS[final]).capitalize()


def _draw_tokens(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct invented tokens, preferring short ones when the world is small."""
    capacity = 0
    for _, size in _token_tiers():
        capacity += size
        # Draw from a space a few times larger than needed, so names stay short
        # in small worlds but the draw is still spread out.
        if capacity >= 4 * count:
            break
    if count > capacity:
        raise ValueError(f"a world needs {count} distinct names; the syllable space holds {capacity}")
    picks = rng.choice(capacity, size=count, replace=False)
    return [_decode_token(int(i)) for i in picks]


def _given_names() -> list[str]:
    """The pool of given names (onset + middle + vowel ending), disjoint from family tokens."""
    return [(o + m + e).capitalize() for o in _ONSETS[::2] for m in _MIDDLES[::2] for e in _GIVEN_ENDINGS]


@dataclass
class FictionalWorld(QADataset):
    """A generated world: a :class:`QADataset` plus, per question, the passage ids that answer each hop.

    Attributes:
        gold_passages: question id -> passage id per hop (the passage holding that hop's answer).
        seed: the generator seed.
    """

    gold_passages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seed: int = 0


@dataclass
class _Tables:
    """Entity attributes of one world, as parallel arrays (index = entity number within its kind)."""

    city: list[str]
    province: list[str]
    city_province: np.ndarray
    city_settled: np.ndarray
    org: list[str]
    org_noun: np.ndarray
    org_founder: np.ndarray
    org_year: np.ndarray
    org_hq: np.ndarray
    person: list[str]
    birth_year: np.ndarray
    birth_city: np.ndarray
    occupation: np.ndarray
    employer: np.ndarray
    death_year: np.ndarray  # 0 = no death recorded
    death_city: np.ndarray
    work: list[str]
    work_genre: np.ndarray
    work_author: np.ndarray
    work_year: np.ndarray
    # passage ids
    city_pid: list[str] = field(default_factory=list)
    org_pid: list[str] = field(default_factory=list)
    person_pid: list[str] = field(default_factory=list)
    death_pid: dict[int, str] = field(default_factory=dict)
    work_pid: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fact:
    """One fact about an entity kind, and how questions and gold queries refer to it.

    Attributes:
        kind: the subject's kind (``person``, ``city``, ``org``, ``work``).
        question: the question, with ``{s}`` for a reference to the subject.
        keyword: appended to the subject's name to make the gold query; the
            passage stating the fact is the only one about the subject that has it.
        value: the answer: an entity index when ``target`` is set, else the text.
        target: the kind of entity the value is (None for a literal).
        passage: the id of the passage stating the fact (None: the subject lacks it).
        bridge: how a two-hop question refers to the value, with ``{s}`` for the subject.
    """

    kind: str
    question: str
    keyword: str
    value: Callable[[_Tables, int], Any]
    target: str | None
    passage: Callable[[_Tables, int], str | None]
    bridge: str = ""


def _person_pid(t: _Tables, i: int) -> str:
    return t.person_pid[i]


def _city_pid(t: _Tables, i: int) -> str:
    return t.city_pid[i]


def _org_pid(t: _Tables, i: int) -> str:
    return t.org_pid[i]


def _work_pid(t: _Tables, i: int) -> str:
    return t.work_pid[i]


_FACTS = {
    "birth_city": _Fact("person", "In which city was {s} born?", "born", lambda t, i: t.birth_city[i], "city",
                        _person_pid, "the city where {s} was born"),
    "birth_year": _Fact("person", "In which year was {s} born?", "born", lambda t, i: str(t.birth_year[i]), None,
                        _person_pid),
    "occupation": _Fact("person", "What is the occupation of {s}?", "occupation",
                        lambda t, i: _OCCUPATIONS[t.occupation[i]], None, _person_pid),
    "employer": _Fact("person", "Which organisation employs {s}?", "employed", lambda t, i: t.employer[i], "org",
                      _person_pid, "the organisation that employs {s}"),
    "death_city": _Fact("person", "In which city did {s} die?", "died", lambda t, i: t.death_city[i], "city",
                        lambda t, i: t.death_pid.get(i)),
    "province": _Fact("city", "In which province is {s}?", "province",
                      lambda t, i: t.province[t.city_province[i]], None, _city_pid),
    "settled": _Fact("city", "In which year was {s} settled?", "settled", lambda t, i: str(t.city_settled[i]), None,
                     _city_pid),
    "founder": _Fact("org", "Who founded {s}?", "founded", lambda t, i: t.org_founder[i], "person", _org_pid,
                     "the founder of {s}"),
    "founded": _Fact("org", "In which year was {s} founded?", "founded", lambda t, i: str(t.org_year[i]), None,
                     _org_pid),
    "headquarters": _Fact("org", "In which city does {s} have its headquarters?", "headquarters",
                          lambda t, i: t.org_hq[i], "city", _org_pid, "the headquarters of {s}"),
    "author": _Fact("work", "Who wrote {s}?", "written", lambda t, i: t.work_author[i], "person", _work_pid,
                    "the author of {s}"),
    "published": _Fact("work", "In which year was {s} published?", "published", lambda t, i: str(t.work_year[i]),
                       None, _work_pid),
    "genre": _Fact("work", "What kind of work is {s}?", "genre written", lambda t, i: _GENRES[t.work_genre[i]], None,
                   _work_pid),
}

# How a question names an entity of each kind.
_REFERENCE = {"person": "{n}", "city": "the city of {n}", "org": "the {n}", "work": "{n}"}

# Question templates: name -> (chain of facts, weight). A two-hop chain follows
# the first fact's entity-valued answer (the bridge) into the second fact.
# The weights give about half single-hop and half two-hop questions.
_TEMPLATES: dict[str, tuple[tuple[_Fact, ...], float]] = {
    **{
        name: ((_FACTS[name],), weight)
        for name, weight in [
            ("birth_city", 1.0), ("birth_year", 0.6), ("occupation", 0.8), ("employer", 0.8), ("death_city", 0.5),
            ("province", 0.3), ("settled", 0.3), ("founder", 0.6), ("founded", 0.4), ("headquarters", 0.5),
            ("author", 0.8), ("published", 0.5), ("genre", 0.4),
        ]
    },
    **{
        f"{a}>{b}": ((_FACTS[a], _FACTS[b]), weight)
        for a, b, weight in [
            ("author", "birth_city", 1.2), ("author", "birth_year", 0.6), ("author", "employer", 0.8),
            ("employer", "founder", 1.2), ("employer", "headquarters", 0.8), ("birth_city", "province", 0.8),
            ("founder", "birth_city", 0.8), ("headquarters", "province", 0.4),
        ]
    },
}


def _ask(t: _Tables, chain: tuple[_Fact, ...], subject: int) -> tuple[str, str, tuple[str, ...], tuple[str, ...]] | None:
    """(question, answer, gold queries, gold passage ids) for ``chain`` asked about ``subject``, or None."""
    kind, index = chain[0].kind, subject
    reference = _REFERENCE[kind].format(n=getattr(t, kind)[index])
    queries, pids = [], []
    for hop, fact in enumerate(chain):
        pid = fact.passage(t, index)
        if pid is None:
            return None
        queries.append(f"{getattr(t, kind)[index]} {fact.keyword}")
        pids.append(pid)
        value = fact.value(t, index)
        if hop < len(chain) - 1:  # follow the bridge entity into the next hop
            reference, kind, index = fact.bridge.format(s=reference), fact.target, int(value)
    last = chain[-1]
    answer = value if last.target is None else getattr(t, last.target)[int(value)]
    return last.question.format(s=reference), answer, tuple(queries), tuple(pids)


def world_fingerprint(seed: int, n_passages: int) -> str:
    """Identifies a world's corpus: generator version + seed + size (keys cached indexes)."""
    digest = hashlib.sha256(f"{GENERATOR_VERSION}/{seed}/{n_passages}".encode()).hexdigest()[:12]
    return f"fictional-s{seed}-n{n_passages}-{digest}"


def _plan_sizes(n_passages: int) -> dict[str, int]:
    """How many entities of each kind give exactly ``n_passages`` passages."""
    cities = max(3, round(0.05 * n_passages))
    orgs = max(3, round(0.10 * n_passages))
    works = max(3, round(0.25 * n_passages))
    person_passages = n_passages - cities - orgs - works
    # One person in five has a second ("later life") passage: persons * 1.2 == person_passages.
    persons = max(2, round(person_passages / 1.2))
    deaths = person_passages - persons
    if deaths < 0 or deaths > persons:
        raise ValueError(f"n_passages={n_passages} is too small for a world (need at least 20)")
    return {
        "cities": cities,
        "provinces": max(2, cities // 8),
        "orgs": orgs,
        "works": works,
        "persons": persons,
        "deaths": deaths,
    }


def _draw_tables(rng: np.random.Generator, sizes: dict[str, int]) -> _Tables:
    """Draw every entity's name and attributes for a world of the given sizes."""
    nc, nr, no, nw, npers = sizes["cities"], sizes["provinces"], sizes["orgs"], sizes["works"], sizes["persons"]
    tokens = _draw_tokens(rng, nc + nr + no + nw + npers)
    cut = np.cumsum([nc, nr, no, nw])
    city, province = tokens[: cut[0]], tokens[cut[0] : cut[1]]
    org_tok, work_tok, family = tokens[cut[1] : cut[2]], tokens[cut[2] : cut[3]], tokens[cut[3] :]
    del tokens

    org_noun = rng.integers(len(_ORGS), size=no)
    org = [f"{t} {_ORGS[k][0]}" for t, k in zip(org_tok, org_noun)]
    work_noun = rng.integers(len(_WORK_NOUNS), size=nw)
    work = [f"The {t} {_WORK_NOUNS[k]}" for t, k in zip(work_tok, work_noun)]
    given_pool = _given_names()
    given = rng.integers(len(given_pool), size=npers)
    person = [f"{given_pool[g]} {f}" for g, f in zip(given, family)]

    birth_year = rng.integers(1500, 1900, size=npers)
    death_year = np.zeros(npers, dtype=np.int64)
    dead = rng.choice(npers, size=sizes["deaths"], replace=False)
    death_year[dead] = birth_year[dead] + rng.integers(30, 90, size=len(dead))
    org_founder = rng.integers(npers, size=no)
    work_author = rng.integers(npers, size=nw)
    return _Tables(
        city=city,
        province=province,
        city_province=rng.integers(nr, size=nc),
        city_settled=rng.integers(700, 1500, size=nc),
        org=org,
        org_noun=org_noun,
        org_founder=org_founder,
        org_year=birth_year[org_founder] + rng.integers(20, 60, size=no),
        org_hq=rng.integers(nc, size=no),
        person=person,
        birth_year=birth_year,
        birth_city=rng.integers(nc, size=npers),
        occupation=rng.integers(len(_OCCUPATIONS), size=npers),
        employer=rng.integers(no, size=npers),
        death_year=death_year,
        death_city=rng.integers(nc, size=npers),
        work=work,
        work_genre=rng.integers(len(_GENRES), size=nw),
        work_author=work_author,
        work_year=birth_year[work_author] + rng.integers(18, 70, size=nw),
    )


def _article(word: str) -> str:
    """'a' or 'an' for an English noun phrase."""
    return "an" if word[0] in "aeiou" else "a"


def _write_corpus(t: _Tables) -> list[Passage]:
    """All passages of a world, assigning passage ids into the tables as it goes."""
    corpus: list[Passage] = []
    add = corpus.append

    def new_id() -> str:
        return str(len(corpus))

    for i, c in enumerate(t.city):
        pid = new_id()
        t.city_pid.append(pid)
        text = (
            f"{c} is a city in the province of {t.province[t.city_province[i]]}. "
            f"The city of {c} was settled in {t.city_settled[i]}."
        )
        add(Passage(pid, c, text))
    for i, o in enumerate(t.org):
        pid = new_id()
        t.org_pid.append(pid)
        text = (
            f"The {o} is {_ORGS[t.org_noun[i]][1]}, founded in {t.org_year[i]} by {t.person[t.org_founder[i]]}. "
            f"The headquarters of the {o} are in the city of {t.city[t.org_hq[i]]}."
        )
        add(Passage(pid, o, text))
    for i, p in enumerate(t.person):
        pid = new_id()
        t.person_pid.append(pid)
        job = _OCCUPATIONS[t.occupation[i]]
        text = (
            f"{p} was born in {t.birth_year[i]} in the city of {t.city[t.birth_city[i]]}. "
            f"By occupation {p} is {_article(job)} {job}, employed by the {t.org[t.employer[i]]}."
        )
        add(Passage(pid, p, text))
        if t.death_year[i]:
            pid = new_id()
            t.death_pid[i] = pid
            # The name stays in the title only, so this short passage does not
            # outrank the main one on name-only matches (it is found by "died").
            text = f"In later life they moved to the city of {t.city[t.death_city[i]]}, where they died in {t.death_year[i]}."
            add(Passage(pid, p, text))
    for i, w in enumerate(t.work):
        pid = new_id()
        t.work_pid.append(pid)
        genre = _GENRES[t.work_genre[i]]
        text = f"{w} is {_article(genre)} {genre} written by {t.person[t.work_author[i]]} and published in {t.work_year[i]}."
        add(Passage(pid, w, text))
    return corpus


def _write_questions(
    t: _Tables, rng: np.random.Generator, n_questions: int
) -> tuple[list[QAItem], dict[str, tuple[str, ...]]]:
    """``n_questions`` distinct questions (template, subject) spread over the templates by weight."""
    kinds = {"person": len(t.person), "city": len(t.city), "org": len(t.org), "work": len(t.work)}
    names = list(_TEMPLATES)
    weights = np.array([_TEMPLATES[n][1] for n in names])
    quota = np.floor(weights / weights.sum() * n_questions).astype(int)
    quota[: n_questions - quota.sum()] += 1  # hand out the rounding remainder
    items: list[QAItem] = []
    gold: dict[str, tuple[str, ...]] = {}
    for name, want in zip(names, quota):
        chain = _TEMPLATES[name][0]
        made_here = 0
        # Walk subjects in random order until the quota is met: some lack the
        # fact (only some people have a recorded death).
        for s in rng.permutation(kinds[chain[0].kind]).tolist():
            if made_here == want:
                break
            made = _ask(t, chain, s)
            if made is None:
                continue
            question, answer, queries, pids = made
            qid = f"{name}:{s}"
            items.append(QAItem(qid, question, (answer,), queries, len(queries)))
            gold[qid] = pids
            made_here += 1
    order = rng.permutation(len(items))
    return [items[i] for i in order], gold


def generate_world(
    seed: int,
    n_passages: int,
    *,
    n_questions: int | None = None,
    split_seed: int = 0,
    test_fraction: float = 0.1,
) -> FictionalWorld:
    """Generate a fictional world of exactly ``n_passages`` passages.

    Args:
        seed: world seed; different seeds give different names and facts.
        n_passages: corpus size (20 to a few million; 100 to 1M is the tested range).
        n_questions: how many questions to write (default ``min(n_passages, 50_000)``).
        split_seed: seed of the train/test split of the questions (not of the world).
        test_fraction: share of questions in ``test`` (at least one question).

    Returns:
        A :class:`FictionalWorld` with splits ``train`` and ``test`` (disjoint) and a
        ``fingerprint`` naming generator version, seed and size.
    """
    if n_passages < 20:
        raise ValueError(f"n_passages must be at least 20, got {n_passages}")
    rng = np.random.default_rng([seed, n_passages])
    tables = _draw_tables(rng, _plan_sizes(n_passages))
    corpus = _write_corpus(tables)
    questions, gold = _write_questions(tables, rng, n_questions or min(n_passages, 50_000))
    return FictionalWorld(
        name="fictional",
        corpus=corpus,
        splits=split_train_test(questions, [seed, n_passages, split_seed], test_fraction),
        fingerprint=world_fingerprint(seed, n_passages),
        gold_passages=gold,
        seed=seed,
    )
