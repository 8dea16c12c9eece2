"""The indexed matcher, its hits and explanations: operators, word forms, normalisation, scope,
and the properties the issue asks for."""

from __future__ import annotations

import gc
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.matching import Matcher, analyze, explain
from monitor.models import ArticleText, HitResult, TextSource, Watchlist
from monitor.query import And, Near, Node, Not, Term, from_lists, parse_query
from tests.corpus import require_corpus

SETS: Mapping[str, Sequence[str]] = {
    "russie": ["Russie", "Moscou", "Kremlin", "Fédération de Russie", "Wagner", "Africa Corps"],
}


def article(text: str, title: str = "", language: str | None = "fr") -> ArticleText:
    return ArticleText(url=None, title=title, text=text, source=TextSource.PAGE, language=language)


def watchlist(query: str, **options: object) -> Watchlist:
    return Watchlist("w", parse_query(query, SETS), **options)  # type: ignore[arg-type]


def hits(query: str, text: str, title: str = "", language: str | None = "fr") -> bool:
    found = Matcher([watchlist(query)]).match(article(text, title, language))
    return bool(found)


def seed_article() -> ArticleText:
    path: Path = require_corpus("seed", "togo-russie.txt")
    return ArticleText(
        url="https://example.org/togo-russie",
        title="Le Togo approuve un accord de coopération militaire avec la Russie",
        text=path.read_text(encoding="utf-8"),
        source=TextSource.PAGE,
    )


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("Togo AND Russie", "Le Togo et la Russie.", True),
        ("Togo AND Russie", "Le Togo et le Bénin.", False),
        ("Togo Russie", "Le Togo et la Russie.", True),  # implicit AND
        ("Togo OR Bénin", "Le Bénin vote.", True),
        ("Togo OR Bénin", "Le Ghana vote.", False),
        ("Togo NOT football", "Le Togo signe un accord.", True),
        ("Togo NOT football", "Le Togo gagne au football.", False),
        ('"accord de défense"', "Un accord de défense est signé.", True),
        ('"accord de défense"', "Un accord est signé pour la défense.", False),
        ('"accord de défense"', "La défense de l'accord.", False),
        ("(Togo OR Bénin) (armée OR police)", "La police du Bénin.", True),
        ("(Togo OR Bénin) (armée OR police)", "Le Bénin vote.", False),
        ("terror*", "Les terroristes ont frappé.", True),
        ("terror*", "La terreur règne.", False),
        ("=Togo", "Au TOGO, hier.", True),
        ("=militaire", "Des militaires.", False),
        ("militaire", "Des militaires.", True),
        ('="accords militaires"', "Des accords militaires.", True),
        ('="accord militaire"', "Des accords militaires.", False),
        ("@russie", "Le Kremlin dément.", True),
        ("@russie", "La Fédération de Russie dément.", True),
        ("@russie", "Africa Corps arrive.", True),
        ("@russie", "Pékin dément.", False),
    ],
)
def test_operators(query: str, text: str, expected: bool) -> None:
    assert hits(query, text) is expected


def test_field_scope() -> None:
    assert hits("title:Togo", "Rien.", title="Le Togo vote")
    assert not hits("title:Togo", "Le Togo vote.", title="Élections")
    assert hits("text:Togo", "Le Togo vote.", title="Élections")
    assert not hits("text:Togo", "Rien.", title="Le Togo vote")
    assert hits("Togo", "Rien.", title="Le Togo vote")  # no scope: title or text
    assert not hits("title:(text:Togo)", "Le Togo vote.", title="Le Togo vote")


@pytest.mark.parametrize(
    ("distance", "expected"),
    [(1, False), (3, False), (4, True), (10, True)],
)
def test_near_counts_positions_between_the_sides(distance: int, expected: bool) -> None:
    text = "Lomé a connu une attaque hier."  # Lomé at 0, attaque at 4
    assert hits(f"Lomé NEAR/{distance} attaque", text) is expected
    assert hits(f"attaque NEAR/{distance} Lomé", text) is expected  # either order


def test_near_adjacent_words_are_one_apart() -> None:
    assert hits("Lomé NEAR/1 attaque", "Lomé attaque.")
    assert not hits("Lomé NEAR/0 attaque", "Lomé attaque.")


def test_near_phrase_counts_as_one_side() -> None:
    text = "Les groupes armés ont frappé près de Lomé."  # phrase ends at 2, Lomé at 7
    assert hits('Lomé NEAR/5 "groupes armés"', text)
    assert not hits('Lomé NEAR/4 "groupes armés"', text)


def test_near_needs_both_sides_in_the_same_field() -> None:
    assert not hits("Lomé NEAR/50 attaque", "Une attaque hier.", title="Lomé")
    assert hits("title:Lomé NEAR/50 attaque", "Rien.", title="Lomé : une attaque")


def test_nested_near_and_or_sides() -> None:
    query = '(Lomé OR Togo) NEAR/10 (attaque OR "groupes armés" OR jihadistes)'
    assert hits(query, "Au Togo, des jihadistes ont attaqué.")
    assert not hits(query, "Au Togo. " + "mot " * 20 + "des jihadistes.")
    assert hits("(a NEAR/1 b) NEAR/2 c", "a b x c")
    assert not hits("(a NEAR/1 b) NEAR/2 c", "a b x y z c")


# --------------------------------------------------------------------------- word forms


@pytest.mark.parametrize(
    ("query", "text", "language"),
    [
        ('"coopération militaire"', "Les coopérations militaires se multiplient.", "fr"),
        ('"instructeur russe"', "Des instructeurs russes sont arrivés.", "fr"),
        ("attack", "The town was attacked twice.", "en"),
        ("attack", "Attacks continued.", "en"),
        ("securite", "Les sécurités nationales.", "fr"),
        ("sécurité", "La securite nationale.", "fr"),
        ("SÉCURITÉ", "la sécurité", "fr"),
    ],
)
def test_word_forms_match(query: str, text: str, language: str) -> None:
    assert hits(query, text, language=language)


def test_watchlist_language_fixes_the_stemmer() -> None:
    text = article("The soldiers attacked the convoy.", language="en")
    english = Watchlist("en", parse_query("attack", {}), language="en")
    assert Matcher([english]).match(text)
    # Stemmed as French, "attack" and "attacked" do not share a stem.
    french = Watchlist("fr", parse_query("attack", {}), language="fr")
    assert not Matcher([french]).match(text)
    assert Matcher([french]).match(article("attack", language="en"))


def test_language_priority_article_then_feed_then_detection() -> None:
    words = Watchlist("w", parse_query("attack", {}))
    undeclared = article("The soldiers attacked the convoy near the border.", language=None)
    matcher = Matcher([words])
    assert matcher.match(undeclared)  # detected as English
    assert not matcher.match(undeclared, feed_language="fr")  # the feed says French
    declared = article("The soldiers attacked the convoy.", language="en")
    assert matcher.match(declared, feed_language="fr")  # the article's own language wins


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("Togo", "Les Togolais votent.", False),  # whole words only
        ("Togo*", "Les Togolais votent.", True),
        ("apple", "A pineapple.", False),
        ("accord", "L’accord est signé.", True),  # elision with ’
        ("accord", "L'accord est signé.", True),
        ("l'accord", "L’accord est signé.", True),
        ("expertise", "des échanges d’expertise", True),
        ("anti-terroriste", "La lutte antiterroriste.", True),
        ("anti-terroriste", "La lutte anti terroriste.", True),
        ("anti-terroriste", "La lutte anti-terroriste.", True),
        ("antiterroriste", "La lutte anti-terroriste.", True),
        ('"lutte antiterroriste renforcée"', "La lutte anti-terroriste renforcée.", True),
        ("Saint-Louis", "À Saint-Louis du Sénégal.", True),
        ("Saint-Louis", "À Saint Louis du Sénégal.", True),
        ("Saint-Louis", "Louis est saint.", False),
        ("COVID-19", "La covid-19 recule.", True),
        ("2024", "En 2024, le Togo.", True),
        ("2024", "En 20245, le Togo.", False),
        ("Москва", "Визит в Москва.", True),
        ("東京", "東京 signe.", True),
        ("Œuvre", "Une oeuvre.", True),
    ],
)
def test_normalisation_rules(query: str, text: str, expected: bool) -> None:
    assert hits(query, text) is expected


# --------------------------------------------------------------------------- hits


def test_seed_article_hits_with_clauses_words_and_snippets() -> None:
    watchlists = [
        Watchlist(
            "Togo — coopération militaire",
            from_lists(
                ["Togo"],
                ["coopération militaire", "accord de défense", "instructeurs russes"],
                ["football"],
                SETS,
            ),
        ),
        Watchlist(
            "Togo — Russie",
            parse_query(
                "Togo AND @russie AND (militaire OR défense OR sécurité) NOT title:football", SETS
            ),
            language="fr",
            feeds=("RFI Afrique", "Jeune Afrique"),
        ),
        Watchlist(
            "Lomé sécurité",
            parse_query('(Lomé OR Togo) NEAR/10 (attaque OR "groupes armés" OR djihadistes)', SETS),
        ),
        Watchlist("Football", parse_query("Togo football", SETS)),
    ]
    found = Matcher(watchlists).match(seed_article(), feed_name="RFI Afrique")
    assert [hit.watchlist for hit in found] == [
        "Togo — coopération militaire",
        "Togo — Russie",
        "Lomé sécurité",
    ]
    first = found[0]
    assert first.matched == ("Togo", "coopération militaire", "instructeurs russes")
    phrase_clauses = [c for c in first.clauses if c.clause.startswith('"coopération')]
    assert [(c.field, c.words) for c in phrase_clauses] == [
        ("title", ("coopération militaire",)),
        ("text", ("coopération militaire", "instructeurs russes")),
    ]
    assert [c.field for c in first.clauses if c.clause == "Togo"] == ["title", "text"]
    assert 1 <= len(first.snippets) <= 3
    assert first.snippets[0] == (
        "Le [[Togo]] franchit une nouvelle étape dans sa stratégie sécuritaire."
    )
    assert "[[coopération militaire]]" in first.snippets[1]

    russia = found[1]
    assert "Fédération de Russie" in russia.matched
    russia_words = next(
        c.words for c in russia.clauses if c.clause == "@russie" and c.field == "text"
    )
    assert "Fédération de Russie" in russia_words and "Moscou" in russia_words

    # Out of its feeds, the scoped watchlist does not apply.
    elsewhere = Matcher(watchlists).match(seed_article(), feed_name="Le Monde")
    assert "Togo — Russie" not in [hit.watchlist for hit in elsewhere]


def test_seed_variants() -> None:
    text = seed_article().text
    query = 'Togo AND ("coopération militaire" OR "instructeurs russes")'
    variants = {
        "plural": text.replace("coopération militaire", "coopérations militaires"),
        "no accents": unicodedata.normalize("NFD", text).encode("ascii", "ignore").decode(),
        "capitals": text.upper(),
        "straight apostrophes": text.replace("’", "'"),
    }
    for name, variant in variants.items():
        assert hits(query, variant, title=""), name
    far = "Le Togo hésite. " + "Rien à signaler. " * 40 + "Des instructeurs russes arrivent."
    assert hits("Togo AND instructeurs", far)
    assert not hits("Togo NEAR/10 instructeurs", far)
    read_also = "La saison commence. À lire aussi : Le Togo signe avec Moscou."
    assert hits("Togo AND Moscou", read_also)  # a "read also" box is text like any other


def test_snippets_mark_words_and_stay_short() -> None:
    long_sentence = "mot " * 300 + "Togo " + "mot " * 300 + "fin."
    hit = Matcher([watchlist("Togo")]).match(article(long_sentence))[0]
    (snippet,) = hit.snippets
    assert "[[Togo]]" in snippet
    assert len(snippet) < 500
    assert snippet.startswith("…") and snippet.endswith("…")
    tricky = Matcher([watchlist("Togo")]).match(article("Le [[Togo]] ]] vote."))[0]
    assert tricky.snippets == ("Le [ [[[Togo]]] ] ] ] vote.",)


def test_snippets_come_from_the_title_only_when_the_text_has_none() -> None:
    hit = Matcher([watchlist("Togo")]).match(article("Rien ici.", title="Le Togo vote"))[0]
    assert hit.snippets == ("Le [[Togo]] vote",)


def test_at_most_three_snippets_in_text_order() -> None:
    text = " ".join(f"Phrase {n} sur le Togo." for n in range(1, 8))
    hit = Matcher([watchlist("Togo")]).match(article(text))[0]
    assert [snippet.split()[1] for snippet in hit.snippets] == ["1", "2", "3"]


def test_hits_come_in_watchlist_order_and_are_deterministic() -> None:
    watchlists = [Watchlist(f"w{n}", parse_query(q, SETS)) for n, q in enumerate(["b", "a", "a b"])]
    matcher = Matcher(watchlists)
    first = matcher.match(article("a b"))
    assert [hit.watchlist for hit in first] == ["w0", "w1", "w2"]
    assert matcher.match(article("a b")) == first


def test_a_watchlist_without_required_terms_is_still_evaluated() -> None:
    # The parser refuses NOT-only queries, but a Watchlist built in code must still work.
    only_not = Watchlist("not", Not(Term("football")))
    matcher = Matcher([only_not])
    assert matcher.match(article("Le Togo vote."))
    assert not matcher.match(article("Le football."))


# --------------------------------------------------------------------------- explain


def test_explain_names_the_failing_not_clause() -> None:
    text = "Le Togo signe. Un accord. Une réunion. Le football reprend."
    explanation = explain(watchlist("Togo NOT football"), article(text))
    assert not explanation.matched
    assert explanation.hit is None
    assert 'NOT football: found "football" in sentence 4' in explanation.lines


def test_explain_a_match_clause_by_clause() -> None:
    query = "Togo AND @russie AND (militaire OR défense OR sécurité) NOT title:football"
    explanation = explain(Watchlist("Togo — Russie", parse_query(query, SETS)), seed_article())
    assert explanation.matched
    assert (
        explanation.hit
        == Matcher([Watchlist("Togo — Russie", parse_query(query, SETS))]).match(seed_article())[0]
    )
    lines = explanation.lines
    assert lines[0].startswith("language: article fr (detected)")
    assert lines[1].startswith('Togo: found "Togo" in the title and sentences 1,')
    assert lines[2].startswith('@russie: found "Russie"')
    assert lines[4] == "NOT title:football: not found, as required"


def test_explain_says_why_a_near_failed() -> None:
    text = "Lomé est calme. " + "Rien. " * 10 + "Une attaque au nord."
    explanation = explain(watchlist("Lomé NEAR/3 attaque"), article(text))
    assert not explanation.matched
    assert "never within 3 words" in explanation.lines[1]
    assert "closest 14 apart" in explanation.lines[1]  # Lomé at 0, attaque at 14


def test_explain_lists_missing_terms_and_scope() -> None:
    scoped = watchlist("(Togo AND Russie) OR Bénin", feeds=("RFI Afrique",))
    explanation = explain(scoped, article("Le Togo vote."), feed_name="Le Monde")
    assert not explanation.matched
    assert any("feed 'Le Monde' is not in RFI Afrique" in line for line in explanation.lines)
    assert "Togo AND Russie: not found (missing: Russie)" in explanation.lines
    assert "Bénin: not found" in explanation.lines


# --------------------------------------------------------------------------- properties

_words = st.sampled_from(
    [
        "Togo",
        "Lomé",
        "sécurité",
        "securites",
        "militaires",
        "coopération",
        "l'accord",
        "anti-terroriste",
        "Saint-Louis",
        "2024",
        "Москва",
        "attaque",
        "football",
        "défense",
        "Russie",
    ]
)
_texts = st.lists(_words, min_size=0, max_size=25).map(" ".join)


@st.composite
def _queries(draw: st.DrawFn) -> str:
    shape = draw(st.integers(0, 6))
    a, b, c = draw(_words), draw(_words), draw(_words)
    quoted = [f'"{w}"' for w in (a, b, c)]
    return [
        f"{quoted[0]} AND {quoted[1]}",
        f"{quoted[0]} OR ({quoted[1]} NOT {quoted[2]})",
        f"{quoted[0]} NEAR/3 {quoted[1]}",
        f"title:{quoted[0]} OR {quoted[1]}",
        f"{quoted[0]} ={quoted[1]}",
        f"{a[:3]}* {quoted[1]} NOT {quoted[2]}" if len(a) >= 3 and a[:3].isalpha() else quoted[0],
        f"({quoted[0]} OR {quoted[1]}) NEAR/2 ({quoted[2]} NEAR/1 {quoted[0]})",
    ][shape]


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(
        char for char in decomposed if not unicodedata.combining(char) or char > "\u036f"
    )


def _names(found: Sequence[HitResult]) -> list[str]:
    return [hit.watchlist for hit in found]


@given(st.lists(_queries(), min_size=1, max_size=6), _texts, _texts)
@settings(max_examples=150, deadline=None)
def test_case_and_accent_changes_never_change_a_result(
    queries: list[str], title: str, text: str
) -> None:
    matcher = Matcher([Watchlist(str(n), parse_query(q, {})) for n, q in enumerate(queries)])
    expected = _names(matcher.match(article(text, title)))
    for changed_title, changed_text in [
        (title.upper(), text.upper()),
        (title.lower(), text.lower()),
        (_strip_accents(title), _strip_accents(text)),
    ]:
        assert _names(matcher.match(article(changed_text, changed_title))) == expected


@given(_queries(), _words, _texts, _texts)
@settings(max_examples=150, deadline=None)
def test_adding_a_not_never_adds_a_hit(query: str, excluded: str, title: str, text: str) -> None:
    base = parse_query(query, {})
    narrowed = And((base, Not(Term(excluded))))
    doc = article(text, title)
    with_not = Matcher([Watchlist("w", narrowed)]).match(doc)
    without = Matcher([Watchlist("w", base)]).match(doc)
    assert not with_not or without


_free_text = st.text(
    alphabet=st.characters(categories=["L", "M", "N", "Pd", "Po", "Zs"]), min_size=1, max_size=30
)


@given(_free_text, _texts, _texts, st.sampled_from(["fr", "en", None]))
@settings(max_examples=200, deadline=None)
def test_a_term_copied_into_an_article_always_matches(
    term: str, before: str, after: str, language: str | None
) -> None:
    node = Term(term.strip())
    assume(node.text and analyze("", node.text, "fr").text.tokens)
    doc = article(f"{before} {node.text} {after}", language=language)
    assert Matcher([Watchlist("w", node)]).match(doc)
    assert Matcher([Watchlist("w", Term(node.text, exact=True))]).match(doc)


@given(st.text(max_size=200), st.text(max_size=80), st.lists(_queries(), min_size=1, max_size=3))
@settings(max_examples=200, deadline=None)
def test_arbitrary_unicode_never_raises(text: str, title: str, queries: list[str]) -> None:
    watchlists = [Watchlist(str(n), parse_query(q, {})) for n, q in enumerate(queries)]
    matcher = Matcher(watchlists)
    for language in (None, "fr", "ru"):
        matcher.match(article(text, title, language))
    for item in watchlists:
        explain(item, article(text, title, None))


@given(st.lists(_queries(), min_size=1, max_size=8), _texts, _texts, st.sampled_from(["fr", "en"]))
@settings(max_examples=150, deadline=None)
def test_explain_agrees_with_match(queries: list[str], title: str, text: str, fixed: str) -> None:
    watchlists = [
        Watchlist(str(n), parse_query(q, {}), language=fixed if n % 3 == 0 else None)
        for n, q in enumerate(queries)
    ]
    doc = article(text, title)
    by_name = {hit.watchlist: hit for hit in Matcher(watchlists).match(doc)}
    for item in watchlists:
        explanation = explain(item, doc)
        assert explanation.matched == (item.name in by_name)
        assert explanation.hit == by_name.get(item.name)


@given(st.lists(_queries(), min_size=1, max_size=12), _texts, _texts, st.sampled_from(["fr", "en"]))
@settings(max_examples=150, deadline=None)
def test_presearch_never_loses_a_hit(queries: list[str], title: str, text: str, fixed: str) -> None:
    watchlists = [
        Watchlist(str(n), parse_query(q, {}), language=fixed if n % 4 == 0 else None)
        for n, q in enumerate(queries)
    ]
    matcher = Matcher(watchlists)
    doc = analyze(title, text, "fr")
    assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


def test_near_over_a_group_built_in_code_uses_the_general_evaluator() -> None:
    # The parser refuses AND inside NEAR; a tree built in code gets the documented meaning.
    node = Near(And((Term("Lomé"), Term("Togo"))), Term("attaque"), 2)
    matcher = Matcher([Watchlist("w", node)])
    for text, expected in [("Lomé attaque Togo", True), ("Lomé. " + "x " * 9 + "attaque", False)]:
        doc = analyze("", text, "fr")
        assert bool(matcher.match_analyzed(doc)) is expected
        assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


def _query_nodes() -> list[Node]:
    return [parse_query(q, SETS) for q in ("Togo", "@russie NEAR/5 Togo", "Togo NOT football")]


def test_matching_many_watchlists_verifies_only_candidates() -> None:
    watchlists = [Watchlist(f"w{n}", parse_query(f"mot{n} AND Togo", {})) for n in range(500)]
    watchlists += [Watchlist(f"q{n}", node) for n, node in enumerate(_query_nodes())]
    matcher = Matcher(watchlists)
    doc = analyze("", "Le Togo et mot7 ensemble, loin du football. La Russie observe.", "fr")
    assert matcher.candidate_count(doc) < 10  # "Togo" is never chosen over the rarer "mot{n}"
    assert [hit.watchlist for hit in matcher.match_analyzed(doc)] == ["w7", "q0"]


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("Mali", "Le pays va mal depuis des années."),  # Snowball: mali -> mal
        ("Bénin", "Des effets secondaires bénins ont été signalés."),
        ("Russie", "Des instructeurs russes sont arrivés."),
    ],
)
def test_a_capitalised_single_word_is_a_name_and_does_not_take_word_forms(
    term: str, text: str
) -> None:
    watchlist = Watchlist(name="w", query=parse_query(term, {}), language="fr")
    article = ArticleText(url=None, title="", text=text, source=TextSource.PAGE, language="fr")
    assert Matcher([watchlist]).match(article) == []
    lower = Watchlist(name="w", query=parse_query(term.lower(), {}), language="fr")
    assert Matcher([lower]).match(article), "in lower case the word takes its forms again"


def test_a_name_still_ignores_case_and_accents() -> None:
    watchlist = Watchlist(name="w", query=parse_query("Bénin", {}), language="fr")
    article = ArticleText(
        url=None, title="", text="Le BENIN et le Togo.", source=TextSource.PAGE, language="fr"
    )
    assert [hit.watchlist for hit in Matcher([watchlist]).match(article)] == ["w"]


@st.composite
def _multi_key_queries(draw: st.DrawFn) -> str:
    """Queries with several required key groups (phrases, ANDs, NEARs of ORs, prefixes,
    scoped and exact terms), as the two presearch stages see them."""
    a, b, c, d = (draw(_words) for _ in range(4))
    shape = draw(st.integers(0, 6))
    prefix = f"{a[:4]}*" if len(a) >= 4 and a[:4].isalpha() else f'"{a}"'
    return [
        f'"{a}" AND "{b}" AND ("{c}" OR "{d}") NOT "{a} {c}"',
        f'"{a} {b}" AND "{c}"',
        f'("{a}" OR "{b}") NEAR/3 ("{c}" OR "{d} {a}")',
        f'"{b}" AND "{c}" AND {prefix}',
        f'title:"{a}" AND ("{b}" OR "{c} {d}")',
        f'="{a}" AND "{b}" AND title:"{c} {d}"',
        f'(="{a}" OR "{b} {c}") NEAR/2 (="{d}" OR "{c}")',
    ][shape]


@given(
    st.lists(_multi_key_queries(), min_size=1, max_size=12),
    _texts,
    _texts,
    st.sampled_from(["fr", "en"]),
)
@settings(max_examples=200, deadline=None)
def test_two_stage_presearch_never_loses_a_hit(
    queries: list[str], title: str, text: str, fixed: str
) -> None:
    watchlists = [
        Watchlist(str(n), parse_query(q, {}), language=fixed if n % 3 == 0 else None)
        for n, q in enumerate(queries)
    ]
    matcher = Matcher(watchlists)
    doc = analyze(title, text, "fr")
    assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


def test_a_candidate_must_hold_keys_of_two_required_groups() -> None:
    matcher = Matcher([Watchlist("w", parse_query('"accord militaire" AND Togo', {}))])
    for text, candidates in [
        # Keys: the two longest words' stems; "Togo" is left to verification.
        ("Un accord avec le Togo.", 0),  # "militaire" is missing: presearch drops it
        ("Un accord militaire avec le Bénin.", 1),  # both keys: verified, not a match
        ("Un accord militaire pour le Togo.", 1),
    ]:
        doc = analyze("", text, "fr")
        assert matcher.candidate_count(doc) == candidates
        assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


# --------------------------------------------------------------------------- language scope


def test_language_scope_keeps_only_articles_in_those_languages() -> None:
    scoped = Watchlist(name="fr only", query=parse_query("Togo", {}), languages=("fr",))
    anywhere = Watchlist(name="any", query=parse_query("Togo", {}))
    matcher = Matcher([scoped, anywhere])

    def names(text: str, language: str | None) -> list[str]:
        article = ArticleText(
            url=None, title="", text=text, source=TextSource.PAGE, language=language
        )
        return [hit.watchlist for hit in matcher.match(article)]

    assert names("Le Togo signe un accord.", "fr") == ["fr only", "any"]
    assert names("Togo signs an agreement.", "en-GB") == ["any"]
    # Undeclared and too short to detect: kept in scope rather than silently dropped.
    assert names("Togo", None) == ["fr only", "any"]

    english = ArticleText(
        url=None, title="", text="Togo signs an agreement.", source=TextSource.PAGE, language="en"
    )
    explanation = explain(scoped, english)
    assert not explanation.matched
    assert any(line.startswith("languages: the article is in en") for line in explanation.lines)


@pytest.mark.parametrize("enabled_before", [True, False])
def test_building_leaves_the_garbage_collector_as_it_was(enabled_before: bool) -> None:
    was_enabled = gc.isenabled()
    try:
        if not enabled_before:
            gc.disable()
        matcher = Matcher([watchlist("Togo AND accord")])
        assert matcher.match(article("Le Togo signe un accord."))
        assert gc.isenabled() is enabled_before
    finally:
        if was_enabled:
            gc.enable()


def test_a_word_scoped_to_the_title_is_looked_up_in_the_title_only() -> None:
    matcher = Matcher([Watchlist("w", parse_query("title:Togo AND (accord OR traité)", {}))])
    for title, text, candidates, hits in [
        ("Politique", "Le Togo signe un accord.", 0, 0),  # Togo only in the text: no candidate
        ("Le Togo signe", "Un accord de défense.", 1, 1),
        ("Le Togo vote", "Rien d'autre.", 0, 0),  # the second group is missing
    ]:
        doc = analyze(title, text, "fr")
        assert matcher.candidate_count(doc) == candidates
        assert len(matcher.match_analyzed(doc)) == hits
        assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


@pytest.mark.parametrize("gap", [1, 3, 4, 9])
def test_near_between_many_occurrences_of_each_side(gap: int) -> None:
    # Enough occurrences on each side for the sorted search rather than the pairwise one.
    filler = " ".join(["mot"] * 12)
    text = " ".join([f"Lomé {filler}"] * 6 + [f"attaque {filler}"] * 6)
    text += " Lomé " + " ".join(["mot"] * (gap - 1)) + " attaque"
    matcher = Matcher([Watchlist("w", parse_query("(Lomé OR Kara) NEAR/3 attaque", {}))])
    doc = analyze("", text, "fr")
    assert bool(matcher.match_analyzed(doc)) is (gap <= 3)
    assert matcher.match_analyzed(doc) == matcher.verify_all(doc)


def test_a_near_chain_over_a_frequent_word_keeps_one_occurrence_per_span() -> None:
    """Each NEAR used to pair every occurrence of one side with every one of the other, so a
    chain over a frequent word multiplied them at every level (seven sides of "le" over a
    360-word article: 3 s and 260 MB, nine: out of memory). One occurrence is kept per
    distinct span, so their number stays under the square of the word positions."""
    from monitor.matching.occurrences import _occurrences
    from monitor.matching.plan import _compile
    from monitor.matching.views import _DocView

    words = ["le", "chat", "dort", "sur", "le", "tapis", "et"] * 8  # "le" 16 times
    text = " ".join(words) + "."
    query = parse_query(" NEAR/20 ".join(["le"] * 5), {})
    doc = analyze("", text, "fr")
    views = _DocView(doc, "fr").fields
    found = _occurrences(_compile(query, "fr"), views)
    assert found is not None
    spans = {(field, start, end) for field, start, end, _, _ in found}
    assert len(found) == len(spans) <= len(words) ** 2
    watchlist = Watchlist(name="w", query=query, language="fr")
    [hit] = Matcher([watchlist]).match(
        ArticleText(url=None, title="", text=text, source=TextSource.PAGE, language="fr")
    )
    assert hit.snippets and "[[le]]" in hit.snippets[0]


@given(
    st.lists(_queries(), min_size=1, max_size=8),
    st.lists(_queries(), min_size=0, max_size=4),
    st.lists(st.integers(0, 11), max_size=12),
    _texts,
    _texts,
    st.sampled_from(["fr", "en", None]),
)
@settings(max_examples=150, deadline=None)
def test_a_matcher_built_from_the_previous_one_matches_as_one_built_afresh(
    queries: list[str],
    added: list[str],
    kept: list[int],
    title: str,
    text: str,
    language: str | None,
) -> None:
    """A reload's matcher reuses the previous matcher's compiled watchlists (the same
    objects): kept, dropped, reordered and new ones give the hits of a fresh build."""
    before = [
        Watchlist(str(n), parse_query(q, {}), language="en" if n % 3 == 0 else None)
        for n, q in enumerate(queries)
    ]
    previous = Matcher(before)
    previous.prepare(["fr", "en"])  # its partitions are carried over
    after = [before[index % len(before)] for index in dict.fromkeys(kept)]
    after += [Watchlist(f"new {n}", parse_query(q, {})) for n, q in enumerate(added)]
    doc = article(text, title, language)
    reused = Matcher(after, previous=previous)
    assert reused.match_reporting(doc) == Matcher(after).match_reporting(doc)
    assert reused.match_reporting(doc) == previous.match_reporting(doc) or after != before


def test_a_matcher_from_the_previous_one_compiles_only_new_watchlists() -> None:
    togo, lome = Watchlist("Togo", Term("Togo")), Watchlist("Lomé", Term("Lomé"))
    previous = Matcher([togo, lome])
    previous.prepare(["fr"])
    kara = Watchlist("Kara", Term("Kara"))
    reused = Matcher([lome, kara], previous=previous)
    (old,) = [p for key, p in previous._partitions.items() if key == (True, "fr")]
    (new,) = [p for key, p in reused._partitions.items() if key == (True, "fr")]
    assert new.compiled[0] is old.compiled[1]  # Lomé: the same compiled form
    assert new.compiled[1].watchlist is kara
    assert _names(reused.match(article("Kara et Lomé", "Togo"))) == ["Lomé", "Kara"]


@given(
    st.lists(_queries(), min_size=1, max_size=8),
    _texts,
    _texts,
    st.sampled_from(["fr", "en"]),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_partitions_of_two_languages_share_only_what_is_the_same_in_both(
    queries: list[str], title: str, text: str, language: str, french_first: bool
) -> None:
    watchlists = [Watchlist(str(n), parse_query(q, {})) for n, q in enumerate(queries)]
    shared = Matcher(watchlists)
    shared.prepare(["fr", "en"] if french_first else ["en", "fr"])
    doc = article(text, title, language)
    assert shared.match_reporting(doc) == Matcher(watchlists).match_reporting(doc)


def test_a_word_stemmed_apart_in_two_languages_is_compiled_in_each() -> None:
    matcher = Matcher([Watchlist("w", parse_query("running", {})), Watchlist("n", Term("Kara"))])
    matcher.prepare(["fr", "en"])
    french, english = matcher._partitions[(True, "fr")], matcher._partitions[(True, "en")]
    assert french.compiled[0] is not english.compiled[0]  # "running" and "run"
    assert french.compiled[1] is english.compiled[1]  # a name: its form in both
    assert _names(matcher.match(article("Le running à Kara", language="fr"))) == ["w", "n"]
    assert _names(matcher.match(article("Kara runs", language="en"))) == ["w", "n"]


def test_a_phrase_whose_words_stem_alike_is_shared_without_compiling_it_again() -> None:
    # "Jean Lawson" stems alike in French and English, "Marie Kodjo" does not (mar / mari).
    phrases = ["Jean Lawson", "Marie Kodjo"]
    matcher = Matcher([Watchlist(p, from_lists((), [p], (), {})) for p in phrases])
    matcher.prepare(["fr", "en"])
    french, english = matcher._partitions[(True, "fr")], matcher._partitions[(True, "en")]
    assert french.compiled[0] is english.compiled[0]
    assert french.compiled[1] is not english.compiled[1]
    assert french._terms is None and english._stemmed is None  # not kept past the build
    assert _names(matcher.match(article("Marie Kodjo et Jean Lawson", language="en"))) == phrases
    assert _names(matcher.match(article("Marie Kodjo et Jean Lawson", language="fr"))) == phrases


# --------------------------------------------------------------------------- compiled once per term


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(
        st.one_of(
            st.text(alphabet="aéAÉ kK-'’.1ßœ", min_size=1, max_size=14),
            st.sampled_from(["Marie Kodjo", "Kofi", "coopération militaire", "Lomé", "jean"]),
        ),
        min_size=1,
        max_size=6,
    ),
    exact=st.booleans(),
    prefix=st.booleans(),
)
def test_a_compilation_s_term_steps_are_those_of_each_term_alone(
    texts: list[str], exact: bool, prefix: bool
) -> None:
    # `_TermSteps` works each term out once per compilation, its words shared between
    # languages; it must give what `_term_steps` gives each term on its own.
    from monitor.matching.plan import _SharedTerms, _term_steps, _TermSteps

    shared = _SharedTerms()
    compilations = [_TermSteps(language, shared) for language in ("fr", "en", None, "xx")]
    for text in texts + texts[::-1]:
        for terms in compilations:
            assert terms(text, exact, prefix) == _term_steps(text, exact, prefix, terms.language)


def test_names_compiled_in_french_and_english_match_as_each_alone() -> None:
    # Names that stem apart in French and English (Marie: mar / mari), and names that do
    # not, compiled together for both languages, each partition sharing terms with the other.
    names = ["Marie Kodjo", "Kofi Dupont", "Jean Lawson", "J. Dupont", "ministre Kokou"]
    watchlists = [
        Watchlist(name=name, query=from_lists((), [name, name.split()[-1]], (), {}))
        for name in names
    ]
    together = Matcher(watchlists)
    together.prepare(("fr", "en"))
    for language, text in (
        ("fr", "Marie Kodjo et le ministre Kokou ont vu Kofi Dupont."),
        ("en", "Marie Kodjo met minister Kokou and Jean Lawson."),
    ):
        article = ArticleText(
            url=None, title="Lomé", text=text, source=TextSource.FEED, language=language
        )
        alone = [hit for watchlist in watchlists for hit in Matcher([watchlist]).match(article)]
        assert together.match(article) == alone
        assert together.match(article)  # not vacuous
