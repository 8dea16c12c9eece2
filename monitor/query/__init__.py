"""The watchlist query language: syntax tree, parser, list builder and canonical rendering.

    tree.py     the syntax tree and the limits a query keeps to
    lists.py    all/any/none lists and @set members as trees     <- tree
    parser.py   query text -> tree, with the rules below          <- tree, lists
    render.py   tree -> canonical text, labels, leaves            <- tree

Pure Python, no third-party imports, no I/O. The matcher (`monitor.matching`) compiles the tree
produced here; this module knows nothing about stemming or articles.

Grammar (operators are upper case; lower-case ``and``/``or``/``not``/``near`` are ordinary words)::

    query    := or_expr
    or_expr  := and_expr ( "OR" and_expr )*
    and_expr := unary ( [ "AND" ] unary )*           # juxtaposition is an implicit AND
    unary    := "NOT" unary | near
    near     := primary ( "NEAR/" n primary )*       # left-associative, n >= 0
    primary  := "(" or_expr ")"
              | ( "title:" | "text:" ) primary        # field scope
              | "=" ( word | phrase )                 # exact form: no word forms
              | word "*"                              # prefix wildcard
              | word | phrase | "@" set_name

    word     := characters other than white space, ( ) and "
    phrase   := '"' anything but '"' '"'

Precedence, tightest first:

    =====  ==========================================  ===================================
    level  construct                                   example and how it groups
    =====  ==========================================  ===================================
    1      parentheses                                 ``(a OR b) c`` = ``(a OR b) AND c``
    2      field scope, ``=``, ``*``, ``@set``          ``title:a b`` = ``(title:a) AND b``
    3      ``NEAR/n``                                  ``a NEAR/3 b c`` = ``(a NEAR/3 b) AND c``
    4      ``NOT`` (unary, on the following term)      ``NOT a NEAR/3 b`` = ``NOT (a NEAR/3 b)``
    5      ``AND``, implicit AND                       ``a NOT b`` = ``a AND NOT b``
    6      ``OR``                                      ``a OR b c`` = ``a OR (b AND c)``
    =====  ==========================================  ===================================

Rules checked here, each reported with the character offset of the culprit:

* ``NEAR`` sides hold only words, phrases, ``@sets``, ``OR`` groups of those, field scopes and
  other ``NEAR``s (``AND``/``NOT`` inside a proximity side have no position to measure).
* A prefix needs at least two characters before ``*``; ``*`` elsewhere in a word is an error;
  ``=`` and ``*`` cannot be combined.
* ``@name`` must name a defined, non-empty set; set members are list items (see `from_lists`),
  and may not refer to other sets.
* The query must be *positive*: every way of satisfying it requires at least one term to be
  present (``NOT a`` alone, or ``a OR NOT b``, would match nearly every article).
"""

from monitor.query.lists import from_lists
from monitor.query.parser import parse_query
from monitor.query.render import leaves, render, render_term, term_label
from monitor.query.tree import (
    FIELDS,
    MAX_NEAR_DISTANCE,
    MAX_NEARS_IN_ONE_EXPRESSION,
    MAX_NESTING,
    MIN_PREFIX_LENGTH,
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
)

__all__ = [
    "FIELDS",
    "MAX_NEARS_IN_ONE_EXPRESSION",
    "MAX_NEAR_DISTANCE",
    "MAX_NESTING",
    "MIN_PREFIX_LENGTH",
    "And",
    "FieldScope",
    "Near",
    "Node",
    "Not",
    "Or",
    "SetRef",
    "Term",
    "from_lists",
    "leaves",
    "parse_query",
    "render",
    "render_term",
    "term_label",
]
