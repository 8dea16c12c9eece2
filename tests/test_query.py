"""The watchlist query language: operators, precedence, errors with offsets, list form, rendering."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import ListTermError, QuerySyntaxError
from monitor.query import (
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
    from_lists,
    leaves,
    parse_query,
    render,
    term_label,
)
from monitor.query.lists import _list_item, _list_item_in_full

SETS = {
    "russie": ["Russie", "Moscou", "Kremlin", "Fédération de Russie", "Wagner", "Africa Corps"],
    "vide": [],
}


def t(text: str, *, exact: bool = False, prefix: bool = False) -> Term:
    return Term(text, exact=exact, prefix=prefix)


# --------------------------------------------------------------------------- operators


def test_every_operator_parses_to_its_node() -> None:
    assert parse_query("Togo", SETS) == t("Togo")
    assert parse_query("Togo AND Russie", SETS) == And((t("Togo"), t("Russie")))
    assert parse_query("Togo OR Bénin", SETS) == Or((t("Togo"), t("Bénin")))
    assert parse_query("Togo NOT football", SETS) == And((t("Togo"), Not(t("football"))))
    assert parse_query('"accord de défense"', SETS) == t("accord de défense")
    assert parse_query("Lomé NEAR/10 attaque", SETS) == Near(t("Lomé"), t("attaque"), 10)
    assert parse_query("terror*", SETS) == t("terror", prefix=True)
    assert parse_query("title:Togo", SETS) == FieldScope("title", t("Togo"))
    assert parse_query("text:Togo", SETS) == FieldScope("text", t("Togo"))
    assert parse_query("=Togo", SETS) == t("Togo", exact=True)
    assert parse_query('="Saint Louis"', SETS) == t("Saint Louis", exact=True)
    assert parse_query("(Togo)", SETS) == t("Togo")


def test_set_reference_expands_to_its_members() -> None:
    node = parse_query("@russie", SETS)
    assert isinstance(node, SetRef)
    assert node.name == "russie"
    assert node.members[3] == t("Fédération de Russie")
    assert [term_label(member) for member in node.members][:2] == ["Russie", "Moscou"]


def test_implicit_and_between_bare_terms() -> None:
    assert parse_query("Togo Russie", SETS) == parse_query("Togo AND Russie", SETS)


def test_lower_case_operators_are_ordinary_words() -> None:
    assert parse_query("paix and or not near sécurité", SETS) == And(
        tuple(t(word) for word in ("paix", "and", "or", "not", "near", "sécurité"))
    )
    assert parse_query("NEARBY", SETS) == t("NEARBY")


def test_issue_examples_parse() -> None:
    query = "Togo AND @russie AND (militaire OR défense OR sécurité) NOT title:football"
    node = parse_query(query, SETS)
    assert isinstance(node, And)
    assert node.children[0] == t("Togo")
    assert node.children[2] == Or((t("militaire"), t("défense"), t("sécurité")))
    assert node.children[3] == Not(FieldScope("title", t("football")))
    near = parse_query('(Lomé OR Togo) NEAR/10 (attaque OR "groupes armés" OR jihadistes)', SETS)
    assert near == Near(
        Or((t("Lomé"), t("Togo"))),
        Or((t("attaque"), t("groupes armés"), t("jihadistes"))),
        10,
    )


# --------------------------------------------------------------------------- precedence

PRECEDENCE = [
    # (query, the same query fully parenthesised)
    ("a OR b c", "a OR (b AND c)"),
    ("a b OR c", "(a AND b) OR c"),
    ("a OR b AND c OR d", "a OR (b AND c) OR d"),
    ("x NOT y", "x AND (NOT y)"),
    ("x NOT y OR z", "(x AND NOT y) OR z"),
    ("x NOT a NEAR/3 b", "x AND NOT (a NEAR/3 b)"),
    ("a NEAR/3 b c", "(a NEAR/3 b) AND c"),
    ("a NEAR/3 b NEAR/5 c", "(a NEAR/3 b) NEAR/5 c"),
    ("title:a b", "(title:a) AND b"),
    ("title:a NEAR/2 b", "(title:a) NEAR/2 b"),
    ("(a OR b) c", "(a OR b) AND c"),
    ("a AND b OR c AND d", "(a AND b) OR (c AND d)"),
]


@pytest.mark.parametrize(("query", "grouped"), PRECEDENCE)
def test_precedence_table(query: str, grouped: str) -> None:
    assert parse_query(query, SETS) == parse_query(grouped, SETS)


def test_not_binds_only_to_the_following_term() -> None:
    assert parse_query("a NOT b c", SETS) == And((t("a"), Not(t("b")), t("c")))


# --------------------------------------------------------------------------- errors

ERRORS = [
    # (query, offset of the culprit, words the message must hold)
    ("(Togo OR Bénin", 0, "'(' at column 1 is never closed"),
    ("Togo AND (Bénin OR (Ghana)", 9, "never closed"),
    ("Togo)", 4, "no matching '('"),
    ("Togo AND", 8, "AND at column 6 needs a term"),
    ("Togo OR OR Bénin", 8, "OR at column 6 needs a term"),
    ("AND Togo", 0, "needs a term on its left"),
    ("NOT Togo", 0, "contains none of its terms"),
    ("Togo OR NOT football", 8, "contains none of its terms"),
    ("@inconnu", 0, "unknown set @inconnu"),
    ("Togo @vide", 5, "set @vide is empty"),
    ('Togo "accord de', 5, "unterminated phrase"),
    ('""', 0, "empty phrase"),
    ("()", 0, "empty parentheses"),
    ("te*rm", 2, "only allowed at the end"),
    ("a*", 0, "at least 2 characters"),
    ("=terror*", 0, "cannot be combined"),
    ("= Togo", 0, "'=' must be followed"),
    ("titre:Togo", 0, "unknown field 'titre:'"),
    ("Togo NEAR Lomé", 5, "NEAR needs a distance"),
    ("a NEAR/3 (b AND c)", 10, "not AND"),
    ("a NEAR/3 (b NOT c)", 10, "not AND"),
    ("", 0, "empty query"),
    ('"a"*', 3, "not to a phrase"),
]


@pytest.mark.parametrize(("query", "offset", "words"), ERRORS)
def test_errors_point_at_the_culprit(query: str, offset: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query, SETS)
    assert caught.value.offset == offset
    assert words in caught.value.message
    assert f"(column {offset + 1})" in str(caught.value)


def test_set_members_cannot_refer_to_sets() -> None:
    with pytest.raises(QuerySyntaxError, match="cannot refer to another set"):
        parse_query("@loop", {"loop": ["@loop"]})


# --------------------------------------------------------------------------- list form


def test_lists_build_the_documented_query() -> None:
    node = from_lists(["Togo"], ["coopération militaire", "accord de défense"], ["football"], SETS)
    assert render(node) == 'Togo AND ("coopération militaire" OR "accord de défense") NOT football'
    assert node == parse_query(render(node), SETS)


def test_list_items_are_literal_terms() -> None:
    node = from_lists(["=Togo", "terror*", "@russie", "AND", "(x)"], [], [], SETS)
    assert isinstance(node, And)
    assert node.children[0] == t("Togo", exact=True)
    assert node.children[1] == t("terror", prefix=True)
    assert isinstance(node.children[2], SetRef)
    assert node.children[3] == t("AND")  # not an operator in a list
    assert node.children[4] == t("(x)")
    assert parse_query(render(node), SETS) == node


def test_single_items_are_not_wrapped() -> None:
    assert from_lists([], ["Togo"], [], SETS) == t("Togo")
    assert from_lists(["a", "b"], [], [], SETS) == And((t("a"), t("b")))
    assert from_lists([], ["a", "b"], ["c"], SETS) == And((Or((t("a"), t("b"))), Not(t("c"))))


@pytest.mark.parametrize(
    ("lists", "list_name", "index", "words"),
    [
        (([], [], ["football"]), "all", 0, "at least one term in all or any"),
        (([], [], []), "all", 0, "at least one term in all or any"),
        ((["Togo", "  "], [], []), "all", 1, "empty term"),
        ((["Togo"], ["@inconnu"], []), "any", 0, "unknown set @inconnu"),
        ((["Togo"], [], ["@vide"]), "none", 0, "is empty"),
        ((["Togo"], ["anti terror*"], []), "any", 0, "one word, not to a phrase"),
        ((["Togo"], ["=terror*"], []), "any", 0, "cannot be combined"),
        ((["t*"], [], []), "all", 0, "at least 2 characters"),
        ((['say "no"'], [], []), "all", 0, "remove the"),
        ((["te*st"], [], []), "all", 0, "only allowed at the end"),
    ],
)
def test_list_errors_name_the_list_and_item(
    lists: tuple[list[str], list[str], list[str]], list_name: str, index: int, words: str
) -> None:
    with pytest.raises(ListTermError) as caught:
        from_lists(*lists, SETS)
    assert (caught.value.list_name, caught.value.index) == (list_name, index)
    assert words in caught.value.message


def test_leaves_lists_terms_in_query_order() -> None:
    node = parse_query("Togo @russie NOT =foot terror*", {"russie": ["Russie", "Moscou"]})
    assert [term_label(term) for term in leaves(node)] == [
        "Togo",
        "Russie",
        "Moscou",
        "=foot",
        "terror*",
    ]


# --------------------------------------------------------------------------- rendering


def test_render_quotes_what_would_not_read_back_as_one_word() -> None:
    assert render(t("AND")) == '"AND"'
    assert render(t("NEAR/3")) == '"NEAR/3"'
    assert render(t("title:x")) == '"title:x"'
    assert render(t("a(b")) == '"a(b"'
    assert render(t("@x")) == '"@x"'
    assert render(t("Saint Louis", exact=True)) == '="Saint Louis"'
    assert render(t("l'accord")) == "l'accord"


_WORDS = st.sampled_from(
    ["Togo", "Lomé", "sécurité", "l'accord", "anti-terroriste", "AND", "x:y", "12:30", "Ghana"]
)
_term = st.builds(
    lambda word, kind: Term(word, exact=kind == 1, prefix=kind == 2 and word.isalpha()),
    _WORDS,
    st.integers(0, 2),
) | st.builds(lambda a, b: Term(f"{a} {b}"), _WORDS, _WORDS)


def _trees(depth: int) -> st.SearchStrategy[Node]:
    if depth == 0:
        return _term
    smaller = _trees(depth - 1)
    near_side: st.SearchStrategy[Node] = _term | st.builds(lambda a, b: Or((a, b)), _term, _term)
    return st.one_of(
        _term,
        st.builds(lambda a, b: Near(a, b, 3), near_side, near_side),
        st.builds(lambda child: FieldScope("title", child), smaller),
        st.builds(
            lambda a, b, negated: And((a, Not(b) if negated else b)),
            smaller.filter(lambda n: not isinstance(n, And)),
            smaller.filter(lambda n: not isinstance(n, And)),
            st.booleans(),
        ),
        st.builds(
            lambda a, b: Or((a, b)),
            smaller.filter(lambda n: not isinstance(n, Or)),
            smaller.filter(lambda n: not isinstance(n, Or)),
        ),
    )


@given(_trees(3))
@settings(max_examples=300)
def test_render_then_parse_gives_the_same_tree(tree: Node) -> None:
    assert parse_query(render(tree), SETS) == tree


@given(st.text(max_size=60))
@settings(max_examples=400)
def test_any_text_parses_or_raises_a_located_syntax_error(text: str) -> None:
    try:
        node = parse_query(text, SETS)
    except QuerySyntaxError as error:
        assert 0 <= error.offset <= len(text)
        assert error.message
    else:
        assert parse_query(render(node), SETS) == node


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("(" * 200 + "a" + ")" * 200, 33),
        ("NOT " * 1000 + "a AND b", 129),
        ("title:" * 40 + "a", 193),
    ],
    ids=["parentheses", "not-chain", "field-scopes"],
)
def test_deep_nesting_is_a_positioned_error_not_a_crash(query: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError, match="nests more than 32 levels") as caught:
        parse_query(query, {})
    assert caught.value.offset + 1 == column


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert parse_query("(" * 32 + "a" + ")" * 32, {}) == parse_query("a", {})


def test_a_near_wider_than_the_limit_is_refused() -> None:
    assert parse_query("a NEAR/200 b", {}) is not None
    with pytest.raises(QuerySyntaxError, match="wider than NEAR/200") as caught:
        parse_query("a NEAR/201 b", {})
    assert caught.value.offset == 2


def test_a_chain_of_more_than_four_nears_is_refused() -> None:
    assert parse_query(" NEAR/5 ".join("abcde"), {}) is not None  # four NEARs
    with pytest.raises(QuerySyntaxError, match="more than 4 NEARs in one expression"):
        parse_query(" NEAR/5 ".join("abcdef"), {})
    with pytest.raises(QuerySyntaxError, match="more than 4 NEARs"):
        parse_query("(a NEAR/5 b NEAR/5 c) NEAR/5 (d NEAR/5 e NEAR/5 f)", {})


def _item_or_error(read: Callable[[object, int], Term], item: object) -> Term | str:
    try:
        return read(item, 3)
    except ValueError as error:
        return str(error)


@given(
    st.one_of(
        st.text(max_size=30),
        st.text(alphabet=' ="@*\t\u00a0ab.', max_size=12),
        st.lists(
            st.sampled_from(["Jean", "J.", "d'Arc", "=x", "ab*", "@s", '"q"']), max_size=4
        ).map(" ".join),
    )
)
@settings(max_examples=600)
def test_a_plain_list_item_reads_as_the_general_way_reads_it(item: str) -> None:
    # The fast way of a list item of plain words must give the same term, offset included.
    fast, full = _item_or_error(_list_item, item), _item_or_error(_list_item_in_full, item)
    assert fast == full
    if isinstance(fast, Term) and isinstance(full, Term):
        assert (fast.offset, fast.exact, fast.prefix) == (full.offset, full.exact, full.prefix)
