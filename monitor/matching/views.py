"""An analysed article seen through one stemming language: what presearch and verification read.

A watchlist stemmed in another language than the article's needs the article's forms stemmed
in that language too: `_FieldView` does so once per field and language, and works out the
token index by stem only for the stems a positional check asks for. `_DocView` merges both
fields' key sets (most checks are set operations on them) and shares the article's form
prefixes between the views of one article.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import itemgetter

from monitor.matching.analysis import AnalyzedField, AnalyzedText
from monitor.matching.plan import _FORM, _STEM, _Step
from monitor.matching.tokens import snowball_language


class _FieldView:
    """One analysed field seen through one stemming language.

    The key sets are all that presearch and most verification need. In the article's own
    language the token index by stem comes from the analysis; in another, a `StemIndex` works
    out the stems that a positional check (phrase, NEAR, hit) asks for, one by one.
    """

    __slots__ = ("_by_stem", "_stem_of", "field", "forms", "language", "name", "stems")

    def __init__(self, field: AnalyzedField, language: str | None, own: bool):
        self.field = field
        self.name = field.name
        self.language = language  # the stemming language of `stems` and `by_stem`
        self.forms = field.stem_of.keys()
        # Own language: the stems analysis computed. Another: stemmed once here, for both the
        # key set and, when asked, the token index.
        self._stem_of: Mapping[str, str] | None = None if own else field.stems_of(language)
        self.stems = field.stems if self._stem_of is None else frozenset(self._stem_of.values())
        self._by_stem: Mapping[str, Sequence[int]] | None = None

    @property
    def by_stem(self) -> Mapping[str, Sequence[int]]:
        if self._by_stem is None:
            field = self.field
            self._by_stem = (
                field.by_stem if self._stem_of is None else field.index_by(self._stem_of)
            )
        return self._by_stem

    def lookup(self, step: _Step) -> Sequence[int]:
        kind, key = step
        if kind == _STEM:
            return self.by_stem.get(key, ()) if key in self.stems else ()
        if kind == _FORM:
            return self.field.by_form.get(key, ())
        by_form = self.field.by_form
        return sorted(
            itertools.chain.from_iterable(
                map(by_form.__getitem__, self.field.forms_with_prefix(key))
            )
        )

    def has(self, step: _Step) -> bool:
        kind, key = step
        if kind == _STEM:
            return key in self.stems
        if kind == _FORM:
            return key in self.forms
        return self.field.has_prefix(key)


class _DocView:
    """An article seen through one stemming language, with both fields' keys merged."""

    __slots__ = ("_prefixes", "fields", "forms_all", "stems_all")

    def __init__(
        self,
        doc: AnalyzedText,
        language: str | None,
        prefixes: dict[int, set[str]] | None = None,
    ) -> None:
        own = language == snowball_language(doc.language)  # the stems analysis computed
        self.fields = (
            _FieldView(doc.title, language, own),
            _FieldView(doc.text, language, own),
        )
        title, text = self.fields
        self.stems_all = title.stems | text.stems
        self.forms_all = title.forms | text.forms
        # Forms do not depend on the stemming language: views of one article share these.
        self._prefixes: dict[int, set[str]] = {} if prefixes is None else prefixes

    def prefixes(self, length: int) -> set[str]:
        """The forms cut to ``length`` characters (shorter forms whole): prefix keys' lookup."""
        found = self._prefixes.get(length)
        if found is None:
            found = self._prefixes[length] = set(map(itemgetter(slice(length)), self.forms_all))
        return found
