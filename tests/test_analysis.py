"""Normalisation, tokenisation, stemming and language detection."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.matching import (
    ELISIONS,
    AnalyzedField,
    analyze,
    detect_language,
    fold,
    normalize,
    stem_forms,
    term_variants,
)
from monitor.matching.analysis import _sentence_span_at, _sentence_spans
from monitor.matching.tokens import _COMPOUND, _split_compound, _variants_of_tokens
from monitor.text import primary_language


def forms(field: AnalyzedField) -> list[str]:
    """Forms at single positions, in order (joined compounds left out)."""
    return [token.form for token in field.tokens if token.end_position == token.position]


# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sécurité", "securite"),
        ("ÉCOLE", "ecole"),
        ("Ça", "ca"),
        ("Œuvre", "oeuvre"),
        ("Cæsar", "caesar"),
        ("Straße", "strasse"),
        ("ﬁn", "fin"),  # NFKC ligature
        ("ＴＯＧＯ", "togo"),  # full width
        ("l’été", "l'ete"),
        ("l‘été", "l'ete"),
        ("e\u0301te\u0301", "ete"),  # decomposed accents
        ("2024 Nº 5", "2024 no 5"),
        ("Москва", "москва"),  # Cyrillic: case folded, otherwise unchanged
        ("Ёлка", "ёлка"),  # a Cyrillic letter keeps its diaeresis
        ("हिन्दी", "हिन्दी"),  # Devanagari marks kept
        ("عَرَبِيّ", "عَرَبِيّ"),  # Arabic harakat kept
        ("東京", "東京"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("elision", sorted(ELISIONS))
@pytest.mark.parametrize("apostrophe", ["'", "’"])
def test_every_elision_is_detached(elision: str, apostrophe: str) -> None:
    field = analyze("", f"{elision.capitalize()}{apostrophe}accord", "fr").text
    assert forms(field) == [elision, "accord"]


def test_other_apostrophes_stay_inside_the_word() -> None:
    assert forms(analyze("", "Aujourd’hui O'Neill", "fr").text) == ["aujourd'hui", "o'neill"]


def test_english_possessive_is_dropped() -> None:
    assert forms(analyze("", "Africa's Togo’s", "en").text) == ["africa", "togo"]


def test_hyphenated_compound_gives_parts_and_joined_form() -> None:
    field = analyze("", "la lutte anti-terroriste reprend", "fr").text
    assert forms(field) == ["la", "lutte", "anti", "terroriste", "reprend"]
    joined = [token for token in field.tokens if token.end_position > token.position]
    assert [(t.form, t.position, t.end_position) for t in joined] == [("antiterroriste", 2, 3)]
    assert field.text[joined[0].start : joined[0].end] == "anti-terroriste"
    assert [token.position for token in field.tokens if token.form == "reprend"] == [4]


def test_spans_point_at_the_original_words() -> None:
    text = "L’accord de coopération militaire, signé à Lomé."
    field = analyze("", text, "fr").text
    assert [text[token.start : token.end] for token in field.tokens] == [
        "L",
        "accord",
        "de",
        "coopération",
        "militaire",
        "signé",
        "à",
        "Lomé",
    ]


def test_digits_and_non_latin_words_pass_through() -> None:
    field = analyze("", "COVID-19 : 2 024 cas à Москва, हिन्दी 東京", None).text
    assert "19" in field.by_form
    assert "2" in field.by_form and "024" in field.by_form
    assert "covid19" in field.by_form
    assert "москва" in field.by_form
    assert "हिन्दी" in field.by_form  # one word, vowel signs included
    assert "東京" in field.by_form


def test_sentences() -> None:
    text = "Le Togo signe. « Un accord ! » Puis la suite…\nNouveau paragraphe sans point"
    field = analyze("Titre. Encore titre", text, "fr")
    sentences = [text[start:end] for start, end in field.text.sentences]
    assert sentences == [
        "Le Togo signe.",
        "« Un accord ! »",
        "Puis la suite…",
        "Nouveau paragraphe sans point",
    ]
    assert {token.sentence for token in field.title.tokens} == {0}
    by_word = {token.form: token.sentence for token in field.text.tokens}
    assert (by_word["togo"], by_word["accord"], by_word["suite"], by_word["point"]) == (0, 1, 2, 3)


def test_term_variants() -> None:
    assert term_variants("Coopération militaire") == (("cooperation", "militaire"),)
    assert term_variants("anti-terroriste") == (("anti", "terroriste"), ("antiterroriste",))
    assert term_variants("Saint-Louis") == (("saint", "louis"), ("saintlouis",))
    assert term_variants("l’accord") == (("l", "accord"),)
    assert term_variants("!!") == ()


@pytest.mark.parametrize(
    "text",
    [
        "Jean Dupont12",
        "J. Dupont12",
        "Agbéyomé Kodjo",
        "Œuvre Straße ﬁnance",
        "e\u0301lection  au   Bénin",  # a combining accent, several spaces
        "नमस्ते भारत",  # Devanagari marks
        "snake_case 2024 ½",
        "Lomé, Kara; Sokodé!",
        "",
        " ",
        "l’accord d'Alger",  # apostrophes: the general way
        "anti-terroriste",
        "J. Dupont12 ID_3 A.B",  # ASCII: lower-cased at once
        "MARIE Kodjo",
    ],
)
def test_term_variants_fast_way_agrees_with_tokens(text: str) -> None:
    import unicodedata

    assert term_variants(text) == _variants_of_tokens(unicodedata.normalize("NFC", text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30))
def test_term_variants_fast_way_agrees_with_tokens_on_any_text(text: str) -> None:
    import unicodedata

    assert term_variants(text) == _variants_of_tokens(unicodedata.normalize("NFC", text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_term_variants_fast_way_agrees_with_tokens_on_ascii_text(text: str) -> None:
    # ASCII text is lower-cased rather than folded word by word (100,000 generated names).
    assert term_variants(text) == _variants_of_tokens(text)


# --------------------------------------------------------------------------- stemming


def test_stemming_works_on_folded_forms_so_accents_never_matter() -> None:
    # Snowball on raw text: sécurité -> sécur, securite -> securit. On folded text they agree.
    stems = stem_forms(
        [normalize(w) for w in ["sécurité", "securite", "sécurités", "SÉCURITÉ"]], "fr"
    )
    assert len(set(stems)) == 1


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("fr", ["coopération", "coopérations"]),
        ("fr", ["militaire", "militaires"]),
        ("fr", ["instructeur", "instructeurs"]),
        ("fr", ["russe", "russes"]),
        ("en", ["attack", "attacks", "attacked", "attacking"]),
        ("de", ["Verteidigung", "Verteidigungen"]),
        ("pt-BR", ["segurança", "seguranças"]),
    ],
)
def test_word_forms_share_a_stem(language: str, words: list[str]) -> None:
    assert len(set(stem_forms([normalize(word) for word in words], language))) == 1


def test_unknown_language_keeps_forms() -> None:
    assert stem_forms(["attacks"], None) == ["attacks"]
    assert stem_forms(["attacks"], "sw") == ["attacks"]  # no Snowball stemmer for Swahili


def test_analysed_stems_follow_the_declared_language() -> None:
    doc = analyze("", "Les attaques", "fr-FR")
    assert doc.language == "fr"
    assert doc.language_source == "declared"
    assert "attaqu" in doc.text.by_stem
    assert doc.text.index_by(doc.text.stems_of("en")) != doc.text.by_stem


# --------------------------------------------------------------------------- language


def test_detect_language() -> None:
    assert detect_language("Le gouvernement a signé un accord de coopération militaire.") == "fr"
    assert detect_language("The government signed a military cooperation agreement.") == "en"
    assert detect_language("Togo") is None
    assert detect_language("") is None
    assert detect_language("12 345 678") is None


def test_analyze_detects_when_no_language_is_given() -> None:
    doc = analyze("Accord militaire", "Le Togo a signé un accord de défense avec la Russie.", None)
    assert (doc.language, doc.language_source) == ("fr", "detected")
    unsure = analyze("", "Togo", None)
    assert (unsure.language, unsure.language_source) == (None, "unknown")


@pytest.mark.parametrize(
    ("tag", "primary"), [("fr", "fr"), ("FR-fr", "fr"), ("en_US", "en"), ("", None), ("*", None)]
)
def test_primary_language(tag: str, primary: str | None) -> None:
    assert primary_language(tag) == primary


# --------------------------------------------------------------------------- properties


@given(st.text(), st.text(), st.sampled_from([None, "fr", "en", "ru", "xx", ""]))
@settings(max_examples=300, deadline=None)
def test_any_text_is_analysed_without_error(title: str, text: str, language: str | None) -> None:
    doc = analyze(title, text, language)
    for field in doc.fields:
        for index, token in enumerate(field.tokens):
            assert 0 <= token.start < token.end <= len(field.text)
            assert token.position <= token.end_position
            assert 0 <= token.sentence < len(field.sentences)
            assert index in field.by_form[token.form]


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll", "Zs"]), max_size=40))
def test_case_never_changes_the_forms(text: str) -> None:
    assume(text.upper().lower() == text.lower())  # e.g. Turkish dotless ı has no round trip
    assert forms(analyze("", text.upper(), "fr").text) == forms(
        analyze("", text.lower(), "fr").text
    )


# --------------------------------------------------------------------------- fast paths

# Text rich in what the tokeniser treats specially: separators between and around words,
# elisions, possessives, combining marks (Latin and Devanagari), digits, other scripts.
_tricky_text = st.lists(
    st.sampled_from(
        [
            "l", "qu", "jusqu", "s", "Togo", "anti", "Saint", "Louis", "é", "e\u0301",
            "हिन्दी", "\u0301", "2024", "東京", "москва", "_", "'", "’", "-", "‑", " ", "\n",
            ". ", "! ", "…", "» ", "\"", "\u00a0", "ﬁn", "\t", " \n ", "?", ")", "\u2029",
        ]
    ),
    max_size=40,
).map("".join)  # fmt: skip


def _reference_tokens(text: str) -> list[tuple[int, int, int, int, str]]:
    """The tokeniser as a plain loop over the compounds (what the split-based one replaced)."""
    tokens: list[tuple[int, int, int, int, str]] = []
    position = 0
    for compound in _COMPOUND.finditer(text):
        word = compound.group()
        if word.isalnum():
            tokens.append((position, position, compound.start(), compound.end(), fold(word)))
            position += 1
        else:
            position = _split_compound(word, compound.start(), position, tokens)
    return tokens


@given(st.one_of(_tricky_text, st.text()))
@settings(max_examples=400, deadline=None)
def test_tokens_are_those_of_a_loop_over_the_compounds(text: str) -> None:
    field = analyze("", text, "fr").text
    assert [token[:5] for token in field.tokens] == _reference_tokens(field.text)


_PLAIN_SENTENCE_END = re.compile(r"[.!?…]+(?:\s?[\"'»”’)\]])*\s+|\s*\n\s*")


def _reference_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans by the plain definition: every boundary found by scanning each position."""
    spans: list[tuple[int, int]] = []
    start = 0
    for boundary in _PLAIN_SENTENCE_END.finditer(text):
        end = boundary.start() + len(boundary.group().rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = boundary.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans or [(0, len(text))]


@given(st.one_of(_tricky_text, st.text()))
@settings(max_examples=300, deadline=None)
def test_sentence_spans_agree_with_the_plain_definition(text: str) -> None:
    # The boundary pattern is written to start on a few characters only (for speed).
    assert _sentence_spans(text) == _reference_sentence_spans(text)


@given(_tricky_text, st.sampled_from([None, "fr", "en"]))
@settings(max_examples=200, deadline=None)
def test_indexes_agree_with_the_tokens(text: str, language: str | None) -> None:
    field = analyze("", text, language).text
    assert set(field.by_form) == set(field.forms) == set(field.stem_of)
    assert field.stems == frozenset(field.stem_of.values())
    for index, form in enumerate(field.forms):
        assert index in field.by_form[form]
        assert index in field.by_stem[field.stem_of[form]]
        start, end = field.sentences[field.sentence_of(index)]
        assert start <= field.starts[index] and field.ends[index] <= end
    for stem, indexes in field.index_by(field.stems_of("en")).items():
        assert list(indexes) == sorted(indexes)
        assert {stem} == set(stem_forms([field.forms[index] for index in indexes], "en"))


@given(st.one_of(_tricky_text, st.text()), st.integers(min_value=1, max_value=64))
@settings(max_examples=300, deadline=None)
def test_a_tokens_sentence_found_locally_is_the_one_found_globally(text: str, window: int) -> None:
    import monitor.matching.analysis as analysis

    field = analyze("", text, None).text
    expected = [field.sentences[field.sentence_of(index)] for index in range(len(field.forms))]
    previous = analysis._SENTENCE_SEARCH_WINDOW
    analysis._SENTENCE_SEARCH_WINDOW = window  # small windows exercise the widening
    try:
        local = [_sentence_span_at(field.text, start) for start in field.starts]
    finally:
        analysis._SENTENCE_SEARCH_WINDOW = previous
    assert local == expected


def test_sentence_span_is_local_until_all_sentences_are_known() -> None:
    text = "Première phrase. " * 200 + "Le Togo signe. Fin."
    field = analyze("", text, "fr").text
    togo = field.by_form["togo"][0]
    assert field.sentence_span_at(field.starts[togo]) == (3400, 3414)
    assert "sentences" not in field.__dict__
    assert field.sentences[field.sentence_of(togo)] == (3400, 3414)


@given(st.one_of(_tricky_text, st.text()), st.text(min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
def test_prefix_search_finds_exactly_the_forms_starting_with_it(text: str, prefix: str) -> None:
    field = analyze("", text, None).text
    joined_forms = "\n".join(list(field.stem_of)[:2])  # never a prefix: forms hold no "\n"
    for probe in {prefix, joined_forms, *(form[:2] for form in field.stem_of), *field.stem_of}:
        expected = [form for form in field.stem_of if form.startswith(probe)]
        assert field.forms_with_prefix(probe) == expected
        assert field.has_prefix(probe) is bool(expected)
