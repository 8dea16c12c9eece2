"""``${VAR}`` expansion in the text values of the tree, after parsing.

Substituting in the tree rather than in the file's text keeps every line and
column those of the file, and lets messages show ``${VAR}`` instead of its
(possibly secret) value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from monitor.config.yaml_tree import Loc, Tree, _Positions, _Problems

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _substitute_environment(
    tree: Tree, positions: _Positions, environ: Mapping[str, str], problems: _Problems
) -> None:
    """Replace ``${VAR}`` in every text value (never in keys) after parsing, so line
    numbers stay those of the file. ``${VAR:-default}`` uses `default` when VAR is
    unset or empty; ``$${`` is a literal ``${``. A missing variable is an error that
    names it; its value is never shown."""

    def visit(node: Tree, loc: Loc) -> Tree:
        if isinstance(node, dict):
            for key, child in node.items():
                node[key] = visit(child, (*loc, key))
            return node
        if isinstance(node, list):
            for index, child in enumerate(node):
                node[index] = visit(child, (*loc, index))
            return node
        if isinstance(node, str) and "$" in node:
            replaced = _substitute_text(node, loc)
            if replaced != node:
                positions.substituted[loc] = (node, replaced)
            return replaced
        return node

    def _substitute_text(text: str, loc: Loc) -> str:
        def replace(reference: re.Match[str]) -> str:
            whole = reference.group(0)
            if whole == "$${":
                return "${"
            body = reference.group(1)
            if body is None:
                problems.add(
                    positions.of_value(loc),
                    '"${" without a closing "}": write ${NAME}, or $${ for a literal "${"',
                )
                return whole
            parsed = _REFERENCE_BODY.fullmatch(body)
            if parsed is None:
                problems.add(
                    positions.of_value(loc),
                    f'bad reference "{whole}": write ${{NAME}} or ${{NAME:-default}} with a '
                    "variable name made of letters, digits and _",
                )
                return whole
            name, default = parsed.groups()
            value = environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                problems.add(
                    positions.of_value(loc),
                    f"environment variable {name} is not set: export {name} before starting "
                    f"monitor, or write ${{{name}:-default}}",
                )
                return whole
            return value

        return _REFERENCE.sub(replace, text)

    visit(tree, ())
